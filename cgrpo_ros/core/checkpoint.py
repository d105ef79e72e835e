"""Whole-training-state checkpoints: atomic, checksummed, loaded without unpickling objects.

File layout: b"CGCK" | u16 format version | 32-byte sha256 of the body | body, where the body
is a `torch.save` of plain containers of tensors, numbers and strings, read back with
`torch.load(weights_only=True)` (which refuses arbitrary classes). The RNG state of numpy is
stored as a JSON string for the same reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgrpo_ros.core.cgrpo import CGRPO
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.policy import GaussianPolicy
from cgrpo_ros.core.reference import ReferencePolicy

MAGIC = b"CGCK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sH32s")
MAX_CHECKPOINT_BYTES = 2 * 1024**3


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or from an incompatible run."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def training_state(algo: CGRPO, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to continue training exactly where it stopped."""
    state: dict[str, Any] = {
        "config_json": json.dumps(algo.config.to_dict(), sort_keys=True),
        "obs_dim": algo.obs_dim,
        "act_dim": algo.act_dim,
        "iteration": algo.iteration,
        "policies": [p.state_dict() for p in algo.policies],
        "optimizers": [o.state_dict() for o in algo.optimizers],
        "reference": algo.reference.state_dicts(),
        "reference_ids": list(algo.reference.source_ids),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng_json": json.dumps(algo.rng.bit_generator.state),
        "extra_json": json.dumps(extra or {}),
    }
    if algo.value is not None and algo.value_optimizer is not None:
        # The value baseline's critic and its optimiser (absent from runs without it, and from
        # checkpoints written before the option existed).
        state["value"] = algo.value.state_dict()
        state["value_optimizer"] = algo.value_optimizer.state_dict()
    return state


def save_checkpoint(path: Path, algo: CGRPO, extra: dict[str, Any] | None = None) -> None:
    buffer = io.BytesIO()
    torch.save(training_state(algo, extra), buffer)
    body = buffer.getvalue()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(body).digest())
    atomic_write_bytes(Path(path), prefix + body)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint file; raise CheckpointError naming what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"checkpoint {path} is {size} bytes, above the {MAX_CHECKPOINT_BYTES} byte limit"
        )
    data = path.read_bytes()
    if len(data) < _PREFIX.size:
        raise CheckpointError(f"checkpoint {path} is truncated ({len(data)} bytes)")
    magic, version, digest = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"{path} is not a cgrpo checkpoint (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this build reads {FORMAT_VERSION}"
        )
    body = data[_PREFIX.size :]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"checkpoint {path} is corrupt: sha256 of its body does not match")
    try:
        state: dict[str, Any] = torch.load(io.BytesIO(body), weights_only=True)
    except Exception as exc:  # torch raises several types for refused content
        raise CheckpointError(f"checkpoint {path} could not be loaded safely: {exc}") from exc
    return state


def load_checkpoint(path: Path) -> tuple[CGRPO, dict[str, Any]]:
    """Rebuild a CGRPO exactly as it was saved; returns it and the `extra` dict."""
    state = read_checkpoint(path)
    try:
        config = CGRPOConfig.from_dict(json.loads(state["config_json"]))
        algo = CGRPO(config, int(state["obs_dim"]), int(state["act_dim"]))
        restore_training_state(algo, state)
        extra: dict[str, Any] = json.loads(state["extra_json"])
    except (KeyError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unexpected layout: {exc}") from exc
    return algo, extra


def restore_training_state(algo: CGRPO, state: dict[str, Any]) -> None:
    for policy, saved in zip(algo.policies, state["policies"], strict=True):
        policy.load_state_dict(saved)
    for optimizer, saved in zip(algo.optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    if algo.value is not None and algo.value_optimizer is not None:
        if "value" not in state or "value_optimizer" not in state:
            raise KeyError(
                "value_baseline is on but the checkpoint holds no critic ('value', "
                "'value_optimizer')"
            )
        algo.value.load_state_dict(state["value"])
        algo.value_optimizer.load_state_dict(state["value_optimizer"])
    members = []
    for saved in state["reference"]:
        member = GaussianPolicy(
            algo.obs_dim, algo.act_dim, algo.config.hidden_sizes, algo.config.init_log_std
        )
        member.load_state_dict(saved)
        members.append(member)
    algo.reference = ReferencePolicy(members, state["reference_ids"])
    algo.iteration = int(state["iteration"])
    torch.set_rng_state(state["torch_rng"])
    algo.rng = np.random.default_rng()
    algo.rng.bit_generator.state = json.loads(state["numpy_rng_json"])
