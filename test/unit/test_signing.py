"""cgrpo_ros/core/signing.py alone: key files, policy envelopes, frame signatures (issue 18)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cgrpo_ros.core import signing
from cgrpo_ros.core.signing import (
    KeyFileError,
    SignatureError,
    SigningKey,
    TrustedKeys,
    generate_key_pair,
)

ONNX = b"\x08\x07" + bytes(range(256)) * 4  # stands for the model bytes: only hashed here
CLAIMS = {"policy_id": 1, "policy_version": 7, "task": "HalfCheetah-v5", "obs_names": ["a"]}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[SigningKey, TrustedKeys]:
    private, public = generate_key_pair(tmp_path / "learner.key")
    return SigningKey.load(private), TrustedKeys.load([public])


def test_keygen_writes_0600_private_and_public_and_refuses_to_overwrite(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "k")
    assert public == tmp_path / "k.pub"
    assert os.stat(private).st_mode & 0o777 == 0o600
    assert os.stat(public).st_mode & 0o777 == 0o644
    assert b"BEGIN PRIVATE KEY" in private.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    before = private.read_bytes()
    with pytest.raises(KeyFileError, match="exists; refusing to overwrite"):
        generate_key_pair(private)
    assert private.read_bytes() == before
    public.unlink()  # only the public half left over: still refused, nothing half-written
    (tmp_path / "j.pub").write_text("x")
    with pytest.raises(KeyFileError, match=r"j\.pub exists"):
        generate_key_pair(tmp_path / "j")
    assert not (tmp_path / "j").exists()


def test_key_files_with_wrong_permissions_or_format_are_refused_clearly(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "k")
    private.chmod(0o644)
    with pytest.raises(KeyFileError) as info:
        SigningKey.load(private)
    assert str(info.value) == (
        f"signing key file {private} has mode 0644; allowed: 0600 or stricter (readable by its "
        f"owner only): run `chmod 600 {private}`"
    )
    private.chmod(0o600)
    public.chmod(0o666)
    with pytest.raises(KeyFileError, match=r"has mode 0666; allowed: not writable by group"):
        TrustedKeys.load([public])
    public.chmod(0o644)
    # Wrong format: the public key where the private one belongs, and back; junk; missing.
    with pytest.raises(KeyFileError, match="holds a private key; allowed: the public key only"):
        TrustedKeys.load([private])
    public_copy = tmp_path / "pub-as-private"
    public_copy.write_bytes(public.read_bytes())
    public_copy.chmod(0o600)
    with pytest.raises(KeyFileError, match="is not an unencrypted PEM private key"):
        SigningKey.load(public_copy)
    junk = tmp_path / "junk.pub"
    junk.write_text("ssh-ed25519 AAAA... not PEM\n")
    with pytest.raises(KeyFileError, match=r"junk\.pub is not a PEM public key.*Ed25519"):
        TrustedKeys.load([junk])
    with pytest.raises(KeyFileError, match=r"missing\.pub cannot be read"):
        TrustedKeys.load([tmp_path / "missing.pub"])
    # Another algorithm: an ECDSA key is valid PEM but not what we sign with.
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pub = tmp_path / "ec.pub"
    ec_pub.write_bytes(ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    with pytest.raises(
        KeyFileError, match=r"ec\.pub holds a key of type ECPublicKey; allowed: an Ed25519"
    ):
        TrustedKeys.load([ec_pub])


def test_policy_envelope_round_trip_and_every_refusal(
    keys: tuple[SigningKey, TrustedKeys],
) -> None:
    signer, trusted = keys
    envelope = signer.sign_policy(ONNX, CLAIMS, signed_at_ns=1000)
    verified = trusted.verify_policy(ONNX, envelope, "policy")
    assert verified.key_id == signer.key_id and verified.signed_at_ns == 1000
    assert {k: verified.claims[k] for k in CLAIMS} == CLAIMS
    assert verified.claims["num_bytes"] == len(ONNX)

    def refused(onnx: bytes, env: bytes | None, trust: TrustedKeys = trusted) -> SignatureError:
        with pytest.raises(SignatureError) as info:
            trust.verify_policy(onnx, env, "policy 1 version 7")
        assert "policy 1 version 7" in str(info.value)
        return info.value

    assert refused(ONNX, None).reason == "unsigned"
    flipped = bytearray(ONNX)
    flipped[100] ^= 1
    err = refused(bytes(flipped), envelope)
    assert err.reason == "bad_signature" and "not the ones signed" in str(err)
    # One flipped byte inside the signed claims (version 7 -> 8): the signature fails.
    data = json.loads(envelope)
    data["claims"] = data["claims"].replace('"policy_version":7', '"policy_version":8')
    err = refused(ONNX, json.dumps(data).encode())
    assert err.reason == "bad_signature" and "does not match the content" in str(err)
    # Signed by a key nobody trusts.
    other = SigningKey.generate().sign_policy(ONNX, CLAIMS)
    err = refused(ONNX, other)
    assert err.reason == "untrusted_key" and signer.key_id in str(err)
    assert refused(ONNX, b"\xff garbage").reason == "malformed_signature"
    assert refused(ONNX, b'{"format": "x"}').reason == "malformed_signature"
    assert refused(ONNX, b"[" * 100_000).reason == "malformed_signature"  # over the size cap
    # A frame signature is never a policy signature (domain separation).
    frame_sig = json.loads(signer.sign_frame(data["claims"].encode()))
    data = json.loads(envelope)
    data["signature"] = frame_sig["signature"]
    assert refused(ONNX, json.dumps(data).encode()).reason == "bad_signature"


def test_claims_and_replay_checks(keys: tuple[SigningKey, TrustedKeys]) -> None:
    signer, trusted = keys
    verified = trusted.verify_policy(ONNX, signer.sign_policy(ONNX, CLAIMS, signed_at_ns=50), "p")
    signing.check_claims(verified, CLAIMS, "p")
    with pytest.raises(SignatureError) as info:
        signing.check_claims(verified, {**CLAIMS, "task": "Hopper-v5"}, "p")
    assert info.value.reason == "claims_mismatch"
    assert "task: signed 'HalfCheetah-v5', artifact 'Hopper-v5'" in str(info.value)
    signing.check_not_replayed(verified, None, "p")
    signing.check_not_replayed(verified, 49, "p")
    for newest in (50, 51):
        with pytest.raises(SignatureError) as info:
            signing.check_not_replayed(verified, newest, "p")
        assert info.value.reason == "replayed"


def test_frame_signatures(keys: tuple[SigningKey, TrustedKeys]) -> None:
    signer, trusted = keys
    frame = b"CGRT" + bytes(1000)
    section = signer.sign_frame(frame)
    assert trusted.verify_frame(frame, section, "frame") == signer.key_id
    with pytest.raises(SignatureError) as info:
        trusted.verify_frame(frame[:-1] + b"\x01", section, "frame")
    assert info.value.reason == "bad_signature"
    bad = json.loads(section)
    bad["signature"] = base64.b64encode(b"short").decode()
    with pytest.raises(SignatureError) as info:
        trusted.verify_frame(frame, json.dumps(bad).encode(), "frame")
    assert info.value.reason == "bad_signature"


def test_write_artifact_pairs_the_file_with_its_signature(
    tmp_path: Path, keys: tuple[SigningKey, TrustedKeys]
) -> None:
    signer, trusted = keys
    path = tmp_path / "policy.onnx"
    signing.write_artifact(path, ONNX, signer, CLAIMS)
    assert trusted.verify_policy(path.read_bytes(), signing.read_signature_file(path), "f")
    # Rewritten unsigned: the old signature goes, so the file reads as unsigned, not tampered.
    signing.write_artifact(path, ONNX + b"x", None, CLAIMS)
    assert signing.read_signature_file(path) is None
