"""Policy frames (learner -> workers): one ONNX policy artifact, versioned, hashed, signed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from cgrpo_ros.wire.frame import (
    MAX_COUNTER,
    MAX_FRAME_BYTES,
    MAX_POLICIES,
    POLICY_MAGIC,
    FieldSpec,
    FrameData,
    WireFormatError,
    append_signature,
    check_fields,
    pack_frame,
    split_signature,
    unpack_frame,
)

_POLICY_FIELDS: FieldSpec = {
    "policy_id": (int, 0, MAX_POLICIES - 1),
    "policy_version": (int, 0, MAX_COUNTER),
    "num_policies": (int, 1, MAX_POLICIES),
    "num_bytes": (int, 1, MAX_FRAME_BYTES),
    "sha256": (str, 64, 64),
    "signed": (int, 0, 1),  # 1: the artifact's signature envelope follows the ONNX bytes
}


@dataclass(frozen=True)
class DecodedPolicy:
    policy_id: int
    policy_version: int
    num_policies: int
    sha256: str
    onnx_bytes: bytes = field(repr=False)
    signature: bytes | None = field(default=None, repr=False)  # the artifact's envelope


def encode_policy(
    onnx_bytes: bytes,
    *,
    policy_id: int,
    policy_version: int,
    num_policies: int,
    signature: bytes | None = None,
) -> bytes:
    """Frame an ONNX policy artifact for the latched `/cgrpo/policies` topic.

    `signature`: the artifact's envelope (`SigningKey.sign_policy`, the `.sig` file's content);
    None: an unsigned frame.
    """
    header = {
        "policy_id": policy_id,
        "policy_version": policy_version,
        "num_policies": num_policies,
        "num_bytes": len(onnx_bytes),
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "signed": int(signature is not None),
    }
    _validate_policy(header)
    frame = pack_frame(POLICY_MAGIC, header, [bytes(onnx_bytes)])
    return frame if signature is None else append_signature(frame, signature)


def _validate_policy(header: dict[str, Any]) -> None:
    check_fields(header, _POLICY_FIELDS, "policy")
    if header["policy_id"] >= header["num_policies"]:
        raise WireFormatError(
            f"policy header field 'policy_id' is {header['policy_id']}; allowed: "
            f"0..{header['num_policies'] - 1} (num_policies={header['num_policies']})"
        )
    if any(c not in "0123456789abcdef" for c in header["sha256"]):
        raise WireFormatError(
            f"policy header field 'sha256' is {header['sha256']!r}; allowed: lowercase hex digits"
        )


def decode_policy(data: FrameData) -> DecodedPolicy:
    """Parse a policy frame and verify the ONNX bytes against the header's sha256."""
    header, payload = unpack_frame(POLICY_MAGIC, "policy", data)
    _validate_policy(header)
    signature = split_signature(
        "policy", header, payload, header["num_bytes"], f"num_bytes={header['num_bytes']}"
    )
    onnx_bytes = bytes(payload[: header["num_bytes"]])
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != header["sha256"]:
        raise WireFormatError(
            f"policy payload sha256 is {digest}; allowed: the header's {header['sha256']} "
            "(corrupted or tampered artifact)"
        )
    fields = ("policy_id", "policy_version", "num_policies", "sha256")
    return DecodedPolicy(
        **{name: header[name] for name in fields}, onnx_bytes=onnx_bytes, signature=signature
    )
