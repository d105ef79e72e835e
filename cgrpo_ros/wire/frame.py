"""The frame every message of the wire format travels in, its limits and its errors.

    magic (4 bytes) | format version (u16 LE) | header length H (u32 LE) | header | payload

The header is UTF-8 JSON (a flat dict of scalars, padded with spaces so that the payload starts
8-byte aligned); the payload is raw little-endian arrays, optionally followed by a signature
section. Decoding treats frames as untrusted (see the package docstring).
"""

from __future__ import annotations

import array
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

# 2: per-episode success flags; 3: same-state group ids (branch_group); 4: signatures
FORMAT_VERSION = 4

TRAJECTORY_MAGIC = b"CGRT"

POLICY_MAGIC = b"CGRP"

_PREFIX = struct.Struct("<4sHI")  # magic, format version, header length

PAYLOAD_ALIGN = 8  # payload offset is a multiple of this, so float64 sections can be aligned

MAX_FRAME_BYTES = 256 * 1024 * 1024

MAX_HEADER_BYTES = 64 * 1024

MAX_STEPS = 1_000_000

MAX_DIM = 4096

MAX_EPISODES = MAX_STEPS  # an episode ends on a step of the batch: E <= T

MAX_EPISODE_LENGTH = 100_000_000  # an episode may have started in earlier batches

MAX_STRING_CHARS = 256  # worker_id, task

MAX_POLICIES = 4096

MAX_METRICS_CHARS = 1024 * 1024

MAX_SIGNATURE_BYTES = 64 * 1024  # signing.MAX_ENVELOPE_BYTES: a policy's claims are a few kB

MAX_COUNTER = 2**63 - 1  # policy_version, seq: fit an int64 wherever they are stored

# Header fields: (type, low, high); for strings the range bounds the length.
FieldSpec = dict[str, tuple[type, int, int]]

# What rclpy, tests and tools hand to the decoders (rclpy delivers array.array('B')).
FrameData: TypeAlias = "bytes | bytearray | memoryview | array.array[int] | Sequence[int]"


class WireFormatError(ValueError):
    """A frame or metrics message that does not follow the wire format."""


def pack_frame(magic: bytes, header: Mapping[str, Any], payload_parts: Sequence[bytes]) -> bytes:
    text = json.dumps(dict(header), separators=(",", ":"), allow_nan=False).encode("utf-8")
    # Trailing spaces are valid JSON whitespace; they align the payload for np.frombuffer.
    text += b" " * (-(_PREFIX.size + len(text)) % PAYLOAD_ALIGN)
    frame = b"".join([_PREFIX.pack(magic, FORMAT_VERSION, len(text)), text, *payload_parts])
    if len(frame) > MAX_FRAME_BYTES:
        msg = f"frame is {len(frame)} bytes; allowed: <= {MAX_FRAME_BYTES} (send fewer steps)"
        raise WireFormatError(msg)
    return frame


def as_buffer(data: FrameData) -> memoryview:
    """A flat byte view of `data`, without copying when it is already a buffer."""
    try:
        if not isinstance(data, bytes | bytearray | memoryview | array.array):
            data = bytes(data[: MAX_FRAME_BYTES + 1])  # e.g. a list of ints from a test or tool
        view = memoryview(data).cast("B")
    except (TypeError, ValueError) as exc:
        raise WireFormatError(f"frame is not bytes or a sequence of ints in 0..255: {exc}") from exc
    if view.nbytes > MAX_FRAME_BYTES:
        raise WireFormatError(f"frame is {view.nbytes} bytes; allowed: <= {MAX_FRAME_BYTES}")
    return view


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise WireFormatError(f"JSON key {key!r} appears twice; allowed: once")
        out[key] = value
    return out


def _reject_constant(token: str) -> float:
    raise WireFormatError(f"JSON contains {token}; allowed: finite numbers (NaN is sent as null)")


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except WireFormatError:
        raise
    except (ValueError, RecursionError) as exc:
        raise WireFormatError(f"{what} is not valid JSON: {exc}") from exc


def unpack_frame(magic: bytes, kind: str, data: FrameData) -> tuple[dict[str, Any], memoryview]:
    view = as_buffer(data)
    if view.nbytes < _PREFIX.size:
        raise WireFormatError(
            f"{kind} frame is {view.nbytes} bytes; allowed: at least the {_PREFIX.size}-byte prefix"
        )
    got_magic, version, header_len = _PREFIX.unpack_from(view)
    if got_magic != magic:
        raise WireFormatError(f"{kind} frame magic is {bytes(got_magic)!r}; allowed: {magic!r}")
    if version != FORMAT_VERSION:
        raise WireFormatError(
            f"{kind} frame format version is {version}; allowed: {FORMAT_VERSION} "
            "(sender and receiver run different cgrpo_ros releases)"
        )
    if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > view.nbytes:
        raise WireFormatError(
            f"{kind} header length is {header_len} bytes; allowed: <= {MAX_HEADER_BYTES} and "
            f"within the {view.nbytes}-byte frame"
        )
    try:
        text = bytes(view[_PREFIX.size : _PREFIX.size + header_len]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireFormatError(f"{kind} header is not valid UTF-8: {exc}") from exc
    header = parse_json(text, f"{kind} header")
    if not isinstance(header, dict):
        raise WireFormatError(f"{kind} header is a JSON {type(header).__name__}; allowed: object")
    return header, view[_PREFIX.size + header_len :]


def check_fields(header: dict[str, Any], fields: FieldSpec, kind: str) -> None:
    missing, extra = sorted(set(fields) - set(header)), sorted(set(header) - set(fields))
    if missing or extra:
        raise WireFormatError(
            f"{kind} header fields missing {missing}, unexpected {extra}; "
            f"allowed exactly: {sorted(fields)}"
        )
    for name, (typ, low, high) in fields.items():
        value: Any = header[name]
        # bool is an int subclass in Python; `true` is never a valid count.
        if not isinstance(value, typ) or isinstance(value, bool):
            raise WireFormatError(
                f"{kind} header field {name!r} is {value!r:.80} ({type(value).__name__}); "
                f"allowed: {typ.__name__}"
            )
        size = len(value) if isinstance(value, str) else int(header[name])
        if not low <= size <= high:
            what = f"{value!r:.80} ({size} chars)" if isinstance(value, str) else str(value)
            unit = " chars" if isinstance(value, str) else ""
            raise WireFormatError(
                f"{kind} header field {name!r} is {what}; allowed: {low}..{high}{unit}"
            )


def append_signature(frame: bytes, signature: bytes) -> bytes:
    if not 1 <= len(signature) <= MAX_SIGNATURE_BYTES:
        raise WireFormatError(
            f"signature section is {len(signature)} bytes; allowed: 1..{MAX_SIGNATURE_BYTES}"
        )
    if len(frame) + len(signature) > MAX_FRAME_BYTES:
        raise WireFormatError(f"signed frame would exceed {MAX_FRAME_BYTES} bytes")
    return frame + bytes(signature)


def split_signature(
    kind: str, header: Mapping[str, Any], payload: memoryview, payload_bytes: int, sizes: str
) -> bytes | None:
    """The signature section after `payload_bytes` of payload (signed frames), else None;
    refuses a frame whose length fits neither."""
    extra = payload.nbytes - payload_bytes
    if header["signed"]:
        if not 1 <= extra <= MAX_SIGNATURE_BYTES:
            raise WireFormatError(
                f"{kind} payload is {payload.nbytes} bytes; allowed: {payload_bytes} as implied "
                f"by {sizes}, plus a signature section of 1..{MAX_SIGNATURE_BYTES} bytes "
                "(signed = 1)"
            )
        return bytes(payload[payload_bytes:])
    if extra != 0:
        raise WireFormatError(
            f"{kind} payload is {payload.nbytes} bytes; allowed: exactly {payload_bytes} as "
            f"implied by {sizes} (signed = 0)"
        )
    return None


def to_uint8_msg(payload: bytes) -> Any:
    """A `std_msgs/UInt8MultiArray` carrying `payload` without a per-element copy.

    rosidl stores an `array.array('B')` as is; plain bytes would be checked element by element
    when ROS_PYTHON_CHECK_FIELDS=1 (seconds for a trajectory batch).
    """
    from std_msgs.msg import UInt8MultiArray  # imported here: the codecs above need no ROS

    msg = UInt8MultiArray()
    msg.data = array.array("B", payload)
    return msg


def from_uint8_msg(msg: Any) -> bytes:
    """The frame bytes of a received `UInt8MultiArray` (rclpy delivers `array.array('B')`)."""
    data = msg.data
    return data.tobytes() if isinstance(data, array.array) else bytes(data)
