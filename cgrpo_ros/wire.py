"""The training stack's wire format on standard ROS message types (see docs/wire_format.md).

Trajectories and policies travel as `std_msgs/UInt8MultiArray` frames:

    magic (4 bytes) | format version (u16 LE) | header length H (u32 LE) | header | payload

The header is UTF-8 JSON (a flat dict of scalars, padded with spaces so that the payload starts
8-byte aligned); the payload is raw little-endian arrays. Metrics are JSON in `std_msgs/String`.
Version 2 added the per-episode success flags of trajectory frames (`reports_success`,
`episode_successes`); version 3 the same-state group of every step (`has_groups`,
`branch_group`); version 4 the `signed` flag and an optional signature section after the
payload of both frames (issue 18, cgrpo_ros/core/signing.py); a decoder accepts only its own
version. The codecs only carry the signature bytes; the nodes verify them.

Frames come from the network, so decoding treats them as untrusted: every problem raises
`WireFormatError` naming the field, its value and what is allowed, sizes are checked against
the actual frame before anything is allocated, and nothing is ever unpickled.
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from cgrpo_ros.core.buffers import RolloutBatch

# 2: per-episode success flags; 3: same-state group ids (branch_group); 4: signatures
FORMAT_VERSION = 4
TRAJECTORY_MAGIC = b"CGRT"
POLICY_MAGIC = b"CGRP"
_PREFIX = struct.Struct("<4sHI")  # magic, format version, header length
_PAYLOAD_ALIGN = 8  # payload offset is a multiple of this, so float64 sections can be aligned

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
_MAX_COUNTER = 2**63 - 1  # policy_version, seq: fit an int64 wherever they are stored

# Header fields: (type, low, high); for strings the range bounds the length.
_Spec = dict[str, tuple[type, int, int]]
_TRAJECTORY_FIELDS: _Spec = {
    "policy_id": (int, 0, MAX_POLICIES - 1),
    "policy_version": (int, 0, _MAX_COUNTER),
    "worker_id": (str, 1, MAX_STRING_CHARS),
    "seq": (int, 0, _MAX_COUNTER),
    "obs_dim": (int, 1, MAX_DIM),
    "act_dim": (int, 1, MAX_DIM),
    "num_steps": (int, 1, MAX_STEPS),
    "num_episodes": (int, 0, MAX_EPISODES),
    "task": (str, 1, MAX_STRING_CHARS),
    # 1: the task reports success and `episode_successes` holds one flag per episode;
    # 0: it does not (locomotion), and that section is all zeros.
    "reports_success": (int, 0, 1),
    # 1: the batch comes from same-state groups and `branch_group` holds each step's branch
    # point (0..num_steps-1); 0: a plain rollout, and that section is all -1.
    "has_groups": (int, 0, 1),
    # 1: a signature section (1..MAX_SIGNATURE_BYTES) follows the payload; 0: none.
    "signed": (int, 0, 1),
}
_POLICY_FIELDS: _Spec = {
    "policy_id": (int, 0, MAX_POLICIES - 1),
    "policy_version": (int, 0, _MAX_COUNTER),
    "num_policies": (int, 1, MAX_POLICIES),
    "num_bytes": (int, 1, MAX_FRAME_BYTES),
    "sha256": (str, 64, 64),
    "signed": (int, 0, 1),  # 1: the artifact's signature envelope follows the ONNX bytes
}

# What rclpy, tests and tools hand to the decoders (rclpy delivers array.array('B')).
FrameData: TypeAlias = "bytes | bytearray | memoryview | array.array[int] | Sequence[int]"


class WireFormatError(ValueError):
    """A frame or metrics message that does not follow the wire format."""


@dataclass(frozen=True)
class DecodedTrajectory:
    policy_id: int
    policy_version: int  # version of the policy that acted (the learner rejects stale ones)
    worker_id: str
    seq: int  # per-worker counter: (worker_id, seq) identifies a batch, for duplicate detection
    task: str
    batch: RolloutBatch
    # Whether each episode of `batch.episode_returns` ended in success (the task's
    # `is_success` on its last step), in the same order; None when the task reports no success.
    episode_successes: list[bool] | None = None
    # The signature section (signed frames only) and the frame bytes it signs.
    signature: bytes | None = field(default=None, repr=False)
    signed_bytes: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DecodedPolicy:
    policy_id: int
    policy_version: int
    num_policies: int
    sha256: str
    onnx_bytes: bytes = field(repr=False)
    signature: bytes | None = field(default=None, repr=False)  # the artifact's envelope


def _frame(magic: bytes, header: Mapping[str, Any], payload_parts: Sequence[bytes]) -> bytes:
    text = json.dumps(dict(header), separators=(",", ":"), allow_nan=False).encode("utf-8")
    # Trailing spaces are valid JSON whitespace; they align the payload for np.frombuffer.
    text += b" " * (-(_PREFIX.size + len(text)) % _PAYLOAD_ALIGN)
    frame = b"".join([_PREFIX.pack(magic, FORMAT_VERSION, len(text)), text, *payload_parts])
    if len(frame) > MAX_FRAME_BYTES:
        msg = f"frame is {len(frame)} bytes; allowed: <= {MAX_FRAME_BYTES} (send fewer steps)"
        raise WireFormatError(msg)
    return frame


def _as_buffer(data: FrameData) -> memoryview:
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


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except WireFormatError:
        raise
    except (ValueError, RecursionError) as exc:
        raise WireFormatError(f"{what} is not valid JSON: {exc}") from exc


def _unframe(magic: bytes, kind: str, data: FrameData) -> tuple[dict[str, Any], memoryview]:
    view = _as_buffer(data)
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
    header = _parse_json(text, f"{kind} header")
    if not isinstance(header, dict):
        raise WireFormatError(f"{kind} header is a JSON {type(header).__name__}; allowed: object")
    return header, view[_PREFIX.size + header_len :]


def _check_fields(header: dict[str, Any], fields: _Spec, kind: str) -> None:
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


# Payload sections in wire order: name, little-endian wire dtype, in-memory type, shape.
# The first ones are the fields of RolloutBatch; `episode_successes` travels beside it.
_BATCH_SECTIONS = (
    ("obs", "<f4", np.float32, ("num_steps", "obs_dim")),
    ("actions", "<f4", np.float32, ("num_steps", "act_dim")),
    ("rewards", "<f4", np.float32, ("num_steps",)),
    ("dones", "u1", np.bool_, ("num_steps",)),
    ("terminated", "u1", np.bool_, ("num_steps",)),
    ("episode_returns", "<f8", np.float64, ("num_episodes",)),
    ("episode_lengths", "<i8", np.int64, ("num_episodes",)),
)
_SECTIONS = (
    *_BATCH_SECTIONS,
    ("episode_successes", "u1", np.bool_, ("num_episodes",)),
    ("branch_group", "<i8", np.int64, ("num_steps",)),
)
_BATCH_FIELDS = tuple(name for name, *_ in _BATCH_SECTIONS)


def _section_sizes(h: Mapping[str, int]) -> list[tuple[str, np.dtype[Any], tuple[int, ...]]]:
    return [(name, np.dtype(wire), tuple(h[d] for d in dims)) for name, wire, _, dims in _SECTIONS]


def _check_arrays(
    arrays: Mapping[str, npt.NDArray[Any]], num_steps: int, reports_success: int, has_groups: int
) -> None:
    """Value checks shared by encoder and decoder, so a bad batch fails at its source."""
    for name in ("obs", "actions", "rewards", "episode_returns"):
        bad = ~np.isfinite(arrays[name])
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise WireFormatError(
                f"trajectory {name}{list(index)} is {arrays[name][index]}; allowed: finite numbers"
            )
    for name in ("dones", "terminated", "episode_successes"):
        values = arrays[name]
        if values.dtype != np.bool_ and (values > 1).any():
            i = int(np.argmax(values > 1))
            raise WireFormatError(f"trajectory {name}[{i}] is {values[i]}; allowed: 0 or 1")
    if not reports_success and arrays["episode_successes"].any():
        i = int(np.argmax(arrays["episode_successes"] != 0))
        raise WireFormatError(
            f"trajectory episode_successes[{i}] is {arrays['episode_successes'][i]}; allowed: "
            "0 when reports_success is 0 (the task reports no success)"
        )
    groups = arrays["branch_group"]
    low = 0 if has_groups else -1
    high = num_steps - 1 if has_groups else -1
    bad_group = (groups < low) | (groups > high)
    if bad_group.any():
        i = int(np.argmax(bad_group))
        raise WireFormatError(
            f"trajectory branch_group[{i}] is {groups[i]}; allowed: {low}..{high} when "
            f"has_groups is {has_groups}"
        )
    lengths = arrays["episode_lengths"]
    if lengths.size and not ((lengths >= 1) & (lengths <= MAX_EPISODE_LENGTH)).all():
        i = int(np.argmax((lengths < 1) | (lengths > MAX_EPISODE_LENGTH)))
        raise WireFormatError(
            f"trajectory episode_lengths[{i}] is {lengths[i]}; allowed: 1..{MAX_EPISODE_LENGTH}"
        )
    # An episode that started in an earlier batch may be longer than this batch, so lengths
    # need not sum to <= T; but every finished episode ends on a step with dones=1.
    num_dones = int(np.count_nonzero(arrays["dones"]))
    if lengths.size > num_dones:
        raise WireFormatError(
            f"trajectory num_episodes is {lengths.size}; allowed: <= the {num_dones} steps "
            f"with dones=1 among num_steps={num_steps}"
        )


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool | int | float | np.bool_ | np.number) and value in (0, 1)


def _success_flags(
    episode_successes: Sequence[bool] | None, num_episodes: int
) -> npt.NDArray[np.uint8]:
    """The `episode_successes` section (uint8 0/1, one per episode) from the encoder's argument."""
    if episode_successes is None:
        return np.zeros(num_episodes, np.uint8)
    try:
        flags = np.asarray(episode_successes)
    except (TypeError, ValueError) as exc:
        raise WireFormatError(
            f"trajectory episode_successes is not a sequence of bools: {exc}"
        ) from exc
    if flags.ndim != 1 or flags.shape[0] != num_episodes:
        got = f"length {flags.shape[0]}" if flags.ndim == 1 else f"shape {flags.shape}"
        raise WireFormatError(
            f"trajectory episode_successes has {got}; allowed: exactly num_episodes="
            f"{num_episodes} (one flag per episode, in the order of episode_returns), or None"
        )
    if flags.dtype == np.bool_:
        return flags.astype(np.uint8)
    if flags.dtype.kind in "iuf":
        bad = ~((flags == 0) | (flags == 1))
    else:  # e.g. None or strings among the flags: find the first that is not one
        bad = np.array([not _is_flag(x) for x in flags.tolist()], dtype=bool)
    if bad.any():
        i = int(np.argmax(bad))
        value = flags.tolist()[i]  # a plain Python value for the message
        raise WireFormatError(
            f"trajectory episode_successes[{i}] is {value!r:.80}; allowed: True/False (or 0/1)"
        )
    return flags.astype(np.uint8)


def encode_trajectory(
    batch: RolloutBatch,
    *,
    policy_id: int,
    policy_version: int,
    worker_id: str,
    seq: int,
    task: str,
    episode_successes: Sequence[bool] | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Frame `batch` for `/cgrpo/trajectories`. Raises WireFormatError for a batch that the
    decoder would reject (inconsistent shapes, NaN/Inf, bad episode lengths).

    `episode_successes`: whether each episode of `batch.episode_returns` ended in success, in
    that order (RolloutCollector.episode_successes); None when the task reports no success.
    `sign`: returns the signature section of the frame bytes it is given
    (`SigningKey.sign_frame`); None: an unsigned frame.
    """
    obs, actions = np.asarray(batch.obs), np.asarray(batch.actions)
    if obs.ndim != 2 or actions.ndim != 2:
        raise WireFormatError(
            f"trajectory obs/actions shapes {obs.shape}/{actions.shape}; want 2-D"
        )
    header: dict[str, Any] = dict(
        policy_id=policy_id, policy_version=policy_version, worker_id=worker_id, seq=seq,
        obs_dim=int(obs.shape[1]), act_dim=int(actions.shape[1]), num_steps=int(obs.shape[0]),
        num_episodes=int(np.shape(batch.episode_returns)[0]), task=task,
        reports_success=int(episode_successes is not None),
        has_groups=int(batch.branch_group is not None), signed=int(sign is not None),
    )  # fmt: skip
    _check_fields(header, _TRAJECTORY_FIELDS, "trajectory")
    values = {name: getattr(batch, name) for name in _BATCH_FIELDS}
    values["episode_successes"] = _success_flags(episode_successes, header["num_episodes"])
    values["branch_group"] = (
        batch.branch_group
        if batch.branch_group is not None
        else np.full(header["num_steps"], -1, np.int64)
    )
    for name, _, shape in _section_sizes(header):
        if np.shape(values[name]) != shape:
            raise WireFormatError(
                f"trajectory {name} has shape {np.shape(values[name])}; allowed: {shape}"
            )
    arrays = {
        name: np.ascontiguousarray(values[name], dtype=dtype)
        for name, dtype, _ in _section_sizes(header)
    }
    _check_arrays(arrays, header["num_steps"], header["reports_success"], header["has_groups"])
    frame = _frame(TRAJECTORY_MAGIC, header, [a.tobytes() for a in arrays.values()])
    return frame if sign is None else _append_signature(frame, sign(frame))


def _append_signature(frame: bytes, signature: bytes) -> bytes:
    if not 1 <= len(signature) <= MAX_SIGNATURE_BYTES:
        raise WireFormatError(
            f"signature section is {len(signature)} bytes; allowed: 1..{MAX_SIGNATURE_BYTES}"
        )
    if len(frame) + len(signature) > MAX_FRAME_BYTES:
        raise WireFormatError(f"signed frame would exceed {MAX_FRAME_BYTES} bytes")
    return frame + bytes(signature)


def _split_signature(
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


def decode_trajectory(data: FrameData) -> DecodedTrajectory:
    """Parse and validate a trajectory frame; the batch owns writable copies of its arrays."""
    header, payload = _unframe(TRAJECTORY_MAGIC, "trajectory", data)
    _check_fields(header, _TRAJECTORY_FIELDS, "trajectory")
    sections = _section_sizes(header)
    # Sizes come from bounded header ints, so this product cannot overflow; compare it with
    # the bytes actually received before touching (let alone allocating for) the payload.
    expected = sum(dtype.itemsize * math.prod(shape) for _, dtype, shape in sections)
    sizes = (
        f"num_steps={header['num_steps']}, obs_dim={header['obs_dim']}, "
        f"act_dim={header['act_dim']}, num_episodes={header['num_episodes']}"
    )
    signature = _split_signature("trajectory", header, payload, expected, sizes)
    payload = payload[:expected]
    arrays: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    for name, dtype, shape in sections:  # views into the frame: no copy until astype below
        arrays[name] = np.frombuffer(payload, dtype, math.prod(shape), offset).reshape(shape)
        offset += arrays[name].nbytes
    _check_arrays(arrays, header["num_steps"], header["reports_success"], header["has_groups"])
    # astype copies: the batch owns writable arrays in native byte order.
    copies: dict[str, Any] = {name: arrays[name].astype(t) for name, _, t, _ in _BATCH_SECTIONS}
    if header["has_groups"]:
        copies["branch_group"] = arrays["branch_group"].astype(np.int64)
    batch = RolloutBatch(**copies)
    successes = (
        arrays["episode_successes"].astype(bool).tolist() if header["reports_success"] else None
    )
    fields = ("policy_id", "policy_version", "worker_id", "seq", "task")
    signed_bytes = None
    if signature is not None:
        view = _as_buffer(data)
        signed_bytes = bytes(view[: view.nbytes - len(signature)])
    return DecodedTrajectory(
        **{name: header[name] for name in fields},
        batch=batch,
        episode_successes=successes,
        signature=signature,
        signed_bytes=signed_bytes,
    )


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
    frame = _frame(POLICY_MAGIC, header, [bytes(onnx_bytes)])
    return frame if signature is None else _append_signature(frame, signature)


def _validate_policy(header: dict[str, Any]) -> None:
    _check_fields(header, _POLICY_FIELDS, "policy")
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
    header, payload = _unframe(POLICY_MAGIC, "policy", data)
    _validate_policy(header)
    signature = _split_signature(
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(item) for item in value]
    if isinstance(value, float | np.floating):
        # A diverged loss is worth reporting, not worth crashing the learner: NaN/Inf -> null.
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value  # json.dumps raises TypeError naming anything else


def encode_metrics(metrics: Mapping[str, Any]) -> str:
    """JSON for `std_msgs/String` on /cgrpo/metrics; non-finite floats become null."""
    return json.dumps(_jsonable(metrics), separators=(",", ":"), allow_nan=False)


def decode_metrics(text: str) -> dict[str, Any]:
    """Parse a metrics message; NaN/Infinity tokens, duplicate keys and non-objects are refused."""
    if len(text) > MAX_METRICS_CHARS:
        raise WireFormatError(
            f"metrics message is {len(text)} chars; allowed: <= {MAX_METRICS_CHARS}"
        )
    value = _parse_json(text, "metrics message")
    if not isinstance(value, dict):
        raise WireFormatError(f"metrics message is a JSON {type(value).__name__}; allowed: object")
    return value


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
