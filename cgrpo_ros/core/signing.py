"""Ed25519 signatures on policy artifacts and frames (issue 18), with `cryptography`.

Nothing here is hand-rolled: keys, signing and verification are `cryptography`'s Ed25519;
this module only decides *what* is signed and how the signature travels (docs/security.md).

Two kinds of signed things:

- **Policy artifacts** (learner -> workers, `cgrpo export`/training -> the policy server): a
  JSON *envelope* holding `claims`, a JSON text naming the SHA-256 and size of the ONNX bytes
  and the metadata that matters (policy id and version, task, observation and action layout,
  action mode, config hash) plus the signing time, and the Ed25519 signature of exactly those
  claim bytes. The same envelope is the `.sig` file beside an `.onnx` file and the signature
  section of a policy frame. The claims are kept as the signed text itself (a JSON string in
  the envelope), so verifying never depends on re-serialising JSON the same way twice.
- **Frames** (worker -> learner trajectories): the signature of the frame bytes themselves.

Every message is prefixed with a domain string before signing, so a signature made for one
kind can never be accepted as the other.

Refusals raise `SignatureError` with a short `reason` (what the nodes count) and a message
naming the thing, the value (bounded) and what is allowed. Key files that are unreadable, of
the wrong kind or readable by others raise `KeyFileError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

POLICY_FORMAT = "cgrpo-policy-signature/1"
FRAME_FORMAT = "cgrpo-frame-signature/1"
# Domain separation: a signature over a policy's claims is never one over a frame, and back.
_POLICY_DOMAIN = b"cgrpo_ros policy artifact claims v1\n"
_FRAME_DOMAIN = b"cgrpo_ros trajectory frame v1\n"
MAX_ENVELOPE_BYTES = 64 * 1024  # a policy's claims are a few kB (observation names)
MAX_KEY_FILE_BYTES = 16 * 1024
KEY_ID_HEX = 16  # 64 bits of SHA-256 of the raw public key: names a key in messages
SIGNATURE_SUFFIX = ".sig"  # policy.onnx -> policy.onnx.sig

# Reasons a node counts (docs/security.md).
UNSIGNED = "unsigned"
MALFORMED_SIGNATURE = "malformed_signature"
UNTRUSTED_KEY = "untrusted_key"
BAD_SIGNATURE = "bad_signature"
REPLAYED = "replayed"
CLAIMS_MISMATCH = "claims_mismatch"


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and what is wrong."""


class SignatureError(ValueError):
    """A signed (or unsigned) artifact or frame that is refused; `reason` is its counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(key: object) -> str:
    return type(key).__name__.removeprefix("_")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX]


def public_key_path(private_path: Path) -> Path:
    """Where `cgrpo keygen` writes the public half: `<private>.pub`."""
    return private_path.with_name(private_path.name + ".pub")


def signature_path(artifact: Path) -> Path:
    """The detached signature of an artifact file: `<file>.sig`."""
    return artifact.with_name(artifact.name + SIGNATURE_SUFFIX)


# -- key files ------------------------------------------------------------------------------------
def generate_key_pair(private_path: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: `private_path` (PKCS#8 PEM, mode 0600) and
    `<private_path>.pub` (SubjectPublicKeyInfo PEM). Refuses to overwrite either file."""
    private_path = Path(private_path)
    public_path = public_key_path(private_path)
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise KeyFileError(
                f"key file {path} exists; refusing to overwrite it (remove it first)"
            )
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # O_EXCL: never follow or replace a file created meanwhile; 0600 from the first byte.
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except OSError:
        private_path.unlink(missing_ok=True)
        raise
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(f"key file {path} exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # the umask may have removed bits we want (0644 for the public key)


def _read_key_file(path: Path, what: str, forbidden_mode: int, allowed: str, fix: str) -> bytes:
    """The bytes of a regular, small key file whose mode has none of `forbidden_mode`'s bits;
    KeyFileError naming the file, what is wrong, what is `allowed` and the `fix` command."""
    try:
        info = path.stat()
    except OSError as exc:
        raise KeyFileError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{what} {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & forbidden_mode:
        raise KeyFileError(
            f"{what} {path} has mode {mode:04o}; allowed: {allowed}: run `{fix} {path}`"
        )
    if info.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(
            f"{what} {path} is {info.st_size} bytes; allowed: <= {MAX_KEY_FILE_BYTES} "
            "(an Ed25519 PEM key is about 120 bytes)"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


class SigningKey:
    """An Ed25519 private key loaded from a file that only its owner can read."""

    def __init__(self, private_key: Ed25519PrivateKey, source: str = "<memory>") -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)
        self.source = source

    @staticmethod
    def load(path: str | Path) -> SigningKey:
        """Refuses a file readable or writable by group or others (mode must be 0600 or
        stricter), one that is not PEM, and any key that is not Ed25519."""
        path = Path(path)
        what = "signing key file"
        data = _read_key_file(
            path, what, 0o077, "0600 or stricter (readable by its owner only)", "chmod 600"
        )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(
                f"{what} {path} is not an unencrypted PEM private key ({_short(str(exc))}); "
                "allowed: an Ed25519 key in PKCS#8 PEM, as `cgrpo keygen` writes"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(
                f"{what} {path} holds a key of type {_kind(key)}; allowed: an Ed25519 "
                "private key (`cgrpo keygen`)"
            )
        return SigningKey(key, source=str(path))

    @staticmethod
    def generate() -> SigningKey:
        return SigningKey(Ed25519PrivateKey.generate())

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write_public(self, path: Path) -> Path:
        """The public half as a PEM file (e.g. for workers to trust); refuses to overwrite."""
        _write_new(Path(path), self.public_pem(), 0o644)
        return Path(path)

    def _sign(self, domain: bytes, message: bytes) -> str:
        return base64.b64encode(self._key.sign(domain + message)).decode("ascii")

    def sign_policy(
        self, onnx_bytes: bytes, claims: Mapping[str, Any], *, signed_at_ns: int | None = None
    ) -> bytes:
        """The envelope (`.sig` file content, policy frame signature section) of an artifact.

        `claims`: the metadata that matters (`policy_artifact.signed_claims`); the SHA-256 and
        size of `onnx_bytes` and the signing time are added here.
        """
        body = {
            **claims,
            "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "num_bytes": len(onnx_bytes),
            "signed_at_ns": time.time_ns() if signed_at_ns is None else int(signed_at_ns),
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
        envelope = {
            "format": POLICY_FORMAT,
            "key_id": self.key_id,
            "claims": text,
            "signature": self._sign(_POLICY_DOMAIN, text.encode("utf-8")),
        }
        return (json.dumps(envelope, indent=1) + "\n").encode("utf-8")

    def sign_frame(self, frame: bytes) -> bytes:
        """The signature section of a frame: an envelope over the frame's bytes."""
        envelope = {
            "format": FRAME_FORMAT,
            "key_id": self.key_id,
            "signature": self._sign(_FRAME_DOMAIN, bytes(frame)),
        }
        return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key (PEM) from a file that others cannot write (mode x22 refused:
    whoever can change a trusted key file can make the node trust their own key)."""
    path = Path(path)
    what = "trusted key file"
    data = _read_key_file(
        path, what, 0o022, "not writable by group or others (e.g. 0644)", "chmod go-w"
    )
    if b"PRIVATE KEY" in data:
        raise KeyFileError(
            f"{what} {path} holds a private key; allowed: the public key only (the `.pub` file "
            "`cgrpo keygen` wrote). Keep the private key on the signing host"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"{what} {path} is not a PEM public key ({_short(str(exc))}); allowed: an Ed25519 "
            "public key in PEM (the `.pub` file of `cgrpo keygen`)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(
            f"{what} {path} holds a key of type {_kind(key)}; allowed: an Ed25519 public "
            "key (`cgrpo keygen`)"
        )
    return key


# -- verification ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedPolicy:
    """What a valid policy signature vouches for."""

    key_id: str
    claims: dict[str, Any]

    @property
    def signed_at_ns(self) -> int:
        return int(self.claims["signed_at_ns"])


class TrustedKeys:
    """The public keys a node accepts signatures from (its `trusted_keys` parameter)."""

    def __init__(self, keys: Iterable[Ed25519PublicKey], sources: Iterable[str] = ()) -> None:
        keys = list(keys)
        self.keys = {key_id(k): k for k in keys}
        names = list(sources) or ["<memory>"] * len(keys)
        self._described = [f"{key_id(k)} ({name})" for k, name in zip(keys, names, strict=True)]

    @staticmethod
    def load(paths: Iterable[str | Path]) -> TrustedKeys:
        paths = [Path(p) for p in paths]
        return TrustedKeys([load_public_key(p) for p in paths], [str(p) for p in paths])

    def __bool__(self) -> bool:
        return bool(self.keys)

    def describe(self) -> str:
        """Key ids and their files, for log lines."""
        return ", ".join(self._described)

    def _parse(self, envelope: bytes | None, fmt: str, keys: set[str], what: str) -> dict[str, Any]:
        if envelope is None or len(envelope) == 0:
            raise SignatureError(UNSIGNED, f"{what} is unsigned; allowed: signed by a trusted key")
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise SignatureError(
                MALFORMED_SIGNATURE,
                f"{what} signature is {len(envelope)} bytes; allowed: <= {MAX_ENVELOPE_BYTES}",
            )
        try:
            data = json.loads(bytes(envelope).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise SignatureError(
                MALFORMED_SIGNATURE, f"{what} signature is not JSON: {_short(str(exc))}"
            ) from None
        if not isinstance(data, dict) or set(data) != keys or data.get("format") != fmt:
            got = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
            fmt_got = data.get("format") if isinstance(data, dict) else None
            raise SignatureError(
                MALFORMED_SIGNATURE,
                f"{what} signature has keys {_short(got)}, format {_short(fmt_got)}; allowed: "
                f"exactly {sorted(keys)} with format {fmt!r}",
            )
        if not all(isinstance(data[k], str) for k in keys):
            raise SignatureError(MALFORMED_SIGNATURE, f"{what} signature fields must be strings")
        return data

    def _check(self, data: dict[str, Any], domain: bytes, message: bytes, what: str) -> str:
        kid = data["key_id"]
        public = self.keys.get(kid)
        if public is None:
            raise SignatureError(
                UNTRUSTED_KEY,
                f"{what} is signed by key {_short(kid, 40)}; allowed: one of the trusted keys "
                f"{sorted(self.keys)}",
            )
        try:
            signature = base64.b64decode(data["signature"], validate=True)
            public.verify(signature, domain + message)
        except (binascii.Error, ValueError, InvalidSignature):
            raise SignatureError(
                BAD_SIGNATURE,
                f"{what}: the signature by key {kid} does not match the content (tampered or "
                "corrupted)",
            ) from None
        return str(kid)

    def verify_policy(self, onnx_bytes: bytes, envelope: bytes | None, what: str) -> VerifiedPolicy:
        """Check an artifact's envelope and that its claims name exactly these ONNX bytes."""
        keys = {"format", "key_id", "claims", "signature"}
        data = self._parse(envelope, POLICY_FORMAT, keys, what)
        kid = self._check(data, _POLICY_DOMAIN, data["claims"].encode("utf-8"), what)
        try:
            claims = json.loads(data["claims"])
        except ValueError:  # signed but not JSON: a signer bug, never trust it
            claims = None
        if not isinstance(claims, dict):
            raise SignatureError(MALFORMED_SIGNATURE, f"{what}: signed claims are not an object")
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        if claims.get("sha256") != digest or claims.get("num_bytes") != len(onnx_bytes):
            raise SignatureError(
                BAD_SIGNATURE,
                f"{what}: the model bytes (sha256 {digest[:16]}..., {len(onnx_bytes)} bytes) are "
                f"not the ones signed (sha256 {str(claims.get('sha256'))[:16]}..., "
                f"{_short(claims.get('num_bytes'))} bytes): tampered or corrupted",
            )
        if not isinstance(claims.get("signed_at_ns"), int) or isinstance(
            claims.get("signed_at_ns"), bool
        ):
            raise SignatureError(MALFORMED_SIGNATURE, f"{what}: signed claims lack signed_at_ns")
        return VerifiedPolicy(key_id=kid, claims=claims)

    def verify_frame(self, frame: bytes, envelope: bytes | None, what: str) -> str:
        """Check a frame's signature section; returns the signer's key id."""
        data = self._parse(envelope, FRAME_FORMAT, {"format", "key_id", "signature"}, what)
        return self._check(data, _FRAME_DOMAIN, bytes(frame), what)


def check_claims(verified: VerifiedPolicy, expected: Mapping[str, Any], what: str) -> None:
    """The signed claims must equal what the artifact itself says (its metadata, the frame's
    header): raises SignatureError(CLAIMS_MISMATCH) naming every field that differs."""
    diffs = [
        f"{name}: signed {_short(verified.claims.get(name), 60)}, artifact {_short(value, 60)}"
        for name, value in expected.items()
        if verified.claims.get(name) != value
    ]
    if diffs:
        raise SignatureError(CLAIMS_MISMATCH, f"{what}: " + "; ".join(diffs))


def check_not_replayed(verified: VerifiedPolicy, newest_ns: int | None, what: str) -> None:
    """Refuse an artifact signed no later than the one in use (a replayed older frame)."""
    if newest_ns is not None and verified.signed_at_ns <= newest_ns:
        raise SignatureError(
            REPLAYED,
            f"{what} was signed at {verified.signed_at_ns} ns, not after the one in use "
            f"({newest_ns} ns); allowed: newer signatures only (a replayed older artifact)",
        )


def read_signature_file(artifact: Path) -> bytes | None:
    """The `.sig` beside `artifact`, or None when there is none (an unsigned file)."""
    path = signature_path(artifact)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SignatureError(MALFORMED_SIGNATURE, f"signature file {path}: {exc}") from None
    if size > MAX_ENVELOPE_BYTES:
        raise SignatureError(
            MALFORMED_SIGNATURE,
            f"signature file {path} is {size} bytes; allowed: <= {MAX_ENVELOPE_BYTES}",
        )
    return path.read_bytes()


def write_artifact(path: Path, onnx_bytes: bytes, signer: SigningKey | None, claims: Any) -> None:
    """Write `path` and, with a signer, `path.sig`; without one, remove a stale `path.sig`
    (an old signature beside a new file would only be refused later as tampering)."""
    path = Path(path)
    sig = signature_path(path)
    sig.unlink(missing_ok=True)  # never a moment with a new .onnx and the old signature
    path.write_bytes(onnx_bytes)
    if signer is not None:
        tmp = sig.with_name(sig.name + ".tmp")
        tmp.write_bytes(signer.sign_policy(onnx_bytes, claims))
        tmp.replace(sig)
