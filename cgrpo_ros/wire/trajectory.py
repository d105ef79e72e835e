"""Trajectory frames (workers -> learner): one RolloutBatch of one policy version."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.wire.frame import (
    MAX_COUNTER,
    MAX_DIM,
    MAX_EPISODE_LENGTH,
    MAX_EPISODES,
    MAX_POLICIES,
    MAX_STEPS,
    MAX_STRING_CHARS,
    TRAJECTORY_MAGIC,
    FieldSpec,
    FrameData,
    WireFormatError,
    append_signature,
    as_buffer,
    check_fields,
    pack_frame,
    split_signature,
    unpack_frame,
)

_TRAJECTORY_FIELDS: FieldSpec = {
    "policy_id": (int, 0, MAX_POLICIES - 1),
    "policy_version": (int, 0, MAX_COUNTER),
    "worker_id": (str, 1, MAX_STRING_CHARS),
    "seq": (int, 0, MAX_COUNTER),
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
    check_fields(header, _TRAJECTORY_FIELDS, "trajectory")
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
    frame = pack_frame(TRAJECTORY_MAGIC, header, [a.tobytes() for a in arrays.values()])
    return frame if sign is None else append_signature(frame, sign(frame))


def decode_trajectory(data: FrameData) -> DecodedTrajectory:
    """Parse and validate a trajectory frame; the batch owns writable copies of its arrays."""
    header, payload = unpack_frame(TRAJECTORY_MAGIC, "trajectory", data)
    check_fields(header, _TRAJECTORY_FIELDS, "trajectory")
    sections = _section_sizes(header)
    # Sizes come from bounded header ints, so this product cannot overflow; compare it with
    # the bytes actually received before touching (let alone allocating for) the payload.
    expected = sum(dtype.itemsize * math.prod(shape) for _, dtype, shape in sections)
    sizes = (
        f"num_steps={header['num_steps']}, obs_dim={header['obs_dim']}, "
        f"act_dim={header['act_dim']}, num_episodes={header['num_episodes']}"
    )
    signature = split_signature("trajectory", header, payload, expected, sizes)
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
        view = as_buffer(data)
        signed_bytes = bytes(view[: view.nbytes - len(signature)])
    return DecodedTrajectory(
        **{name: header[name] for name in fields},
        batch=batch,
        episode_successes=successes,
        signature=signature,
        signed_bytes=signed_bytes,
    )
