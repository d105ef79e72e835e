"""A loaded, validated policy ready for the control loop, and tick timing statistics (no ROS).

`load_policy_runtime` is the one gate a model passes at start-up and on hot reload: the ONNX
file is read and checked against its own metadata (OnnxPolicy) and against the robot config
(validate_policy_against_robot); any problem raises PolicyArtifactError listing every
difference, so the node can refuse to start, or refuse the reload, with that message.
With trusted keys (issue 18) the file's detached signature `<file>.sig` is checked first:
unsigned, untrusted, tampered or older-than-the-running-policy files are refused the same way.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cgrpo_ros.core.policy_artifact import MAX_MODEL_BYTES, OnnxPolicy, PolicyArtifactError
from cgrpo_ros.core.signing import (
    SignatureError,
    TrustedKeys,
    check_claims,
    check_not_replayed,
    read_signature_file,
)
from cgrpo_ros.deploy.observation import ObservationBuilder, validate_policy_against_robot
from cgrpo_ros.robot.config import RobotConfig
from cgrpo_ros.robot.reach_task import ReachTask

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PolicyRuntime:
    """Policy and observation builder swapped together, as one reference, between ticks."""

    policy: OnnxPolicy
    builder: ObservationBuilder
    path: str
    reach: ReachTask | None = None
    """Forward kinematics and fingertip steps, when the policy's layout or actions use them."""
    signed_by: str | None = None  # key id of a verified signature; None: unsigned policy
    signed_at_ns: int | None = None

    def joint_target(self, action: FloatArray, last_command: npt.ArrayLike) -> FloatArray:
        """Joint targets for a policy action: the action itself for joint_position policies,
        a damped-least-squares fingertip step from the last command for fingertip_delta ones
        (the same ReachTask.joint_target as in training)."""
        if self.policy.metadata.action_mode == "joint_position":
            return action
        assert self.reach is not None
        return self.reach.joint_target(action, last_command)

    def describe(self) -> dict[str, object]:
        meta = self.policy.metadata
        return {
            "path": self.path,
            "policy_id": meta.policy_id,
            "policy_version": meta.policy_version,
            "task": meta.task,
            "config_hash": meta.config_hash[:12],
            "signed_by": self.signed_by,
        }


def load_policy_runtime(
    path: str | Path,
    robot: RobotConfig,
    trusted: TrustedKeys | None = None,
    newer_than_ns: int | None = None,
) -> PolicyRuntime:
    """Load and validate; PolicyArtifactError names the file and every difference.

    `trusted`: when it holds keys, the file must carry a valid signature by one of them;
    `newer_than_ns`: the running policy's signing time (a reload must be signed later).
    """
    if not str(path):
        raise PolicyArtifactError(
            "parameter 'model_path' is empty; pass the ONNX policy, e.g. "
            "-p model_path:=runs/<run>/best.onnx (cgrpo export writes one)"
        )
    file = Path(path)
    if not file.is_file():
        raise PolicyArtifactError(f"policy model {file} does not exist (parameter 'model_path')")
    if not trusted:
        policy = OnnxPolicy.from_file(file)
        signed_by, signed_at = None, None
    else:
        policy, signed_by, signed_at = _load_signed(file, trusted, newer_than_ns)
    problems = validate_policy_against_robot(policy.metadata, robot)
    if problems:
        listing = "\n  - ".join(problems)
        raise PolicyArtifactError(
            f"policy model {file} does not match the robot config {robot.name!r}:\n  - {listing}"
        )
    meta = policy.metadata
    needs_kinematics = meta.action_mode == "fingertip_delta" or any(
        name.startswith(("fingertip/", "goal_offset/")) for name in meta.obs_names
    )
    reach = ReachTask(robot) if needs_kinematics else None
    builder = ObservationBuilder(
        meta.obs_names,
        robot.joint_names,
        position_lower=robot.lower,
        position_upper=robot.upper,
        forward_kinematics=reach.fingertip if reach is not None else None,
        goal_box=(robot.reach.goal_low, robot.reach.goal_high),
    )
    # One inference now: a graph that loads but fails to run is refused here, not at a tick.
    probe = policy.action_mean(np.zeros(policy.metadata.obs_dim, dtype=np.float32))
    if probe.shape != (policy.metadata.act_dim,):
        raise PolicyArtifactError(
            f"policy model {file} returned an action of shape {probe.shape}; expected "
            f"({policy.metadata.act_dim},)"
        )
    return PolicyRuntime(
        policy=policy,
        builder=builder,
        path=str(file),
        reach=reach,
        signed_by=signed_by,
        signed_at_ns=signed_at,
    )


def _load_signed(
    file: Path, trusted: TrustedKeys, newer_than_ns: int | None
) -> tuple[OnnxPolicy, str, int]:
    """The policy of a file whose signature is checked before onnxruntime parses it."""
    try:
        if file.stat().st_size > MAX_MODEL_BYTES:
            raise PolicyArtifactError(f"policy model {file} is above {MAX_MODEL_BYTES} bytes")
        data = file.read_bytes()
    except OSError as exc:
        raise PolicyArtifactError(f"policy model {file} cannot be read: {exc}") from None
    try:
        verified = trusted.verify_policy(data, read_signature_file(file), f"policy model {file}")
        check_not_replayed(verified, newer_than_ns, f"policy model {file}")
        policy = OnnxPolicy(data, source=str(file))
        check_claims(verified, policy.metadata.signed_claims(), f"policy model {file}")
    except SignatureError as err:
        hint = " (sign it: cgrpo export --signing-key, or `.sig` missing)"
        raise PolicyArtifactError(
            f"{err} [{err.reason}]" + (hint if err.reason == "unsigned" else "")
        ) from None
    return policy, verified.key_id, verified.signed_at_ns


class WindowStats:
    """Percentiles over the last `size` samples (control periods, inference times)."""

    def __init__(self, size: int = 10_000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self.count = 0
        self.maximum = 0.0

    def add(self, value: float) -> None:
        self._values.append(value)
        self.count += 1
        self.maximum = max(self.maximum, value)

    def summary(self, scale: float = 1e3, digits: int = 4) -> dict[str, float | int]:
        """p50/p99/max (of all samples), scaled (seconds -> ms by default)."""
        if not self._values:
            return {"count": 0}
        values: npt.NDArray[np.float64] = np.asarray(self._values, dtype=np.float64)
        p50, p99 = np.percentile(values, [50, 99])
        return {
            "count": self.count,
            "p50": round(float(p50) * scale, digits),
            "p99": round(float(p99) * scale, digits),
            "max": round(self.maximum * scale, digits),
        }


def timed_action(
    runtime: PolicyRuntime, obs: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], float]:
    """Deterministic action (clipped to the model's bounds; NaN stays NaN) and seconds taken."""
    start = time.perf_counter()
    mean = runtime.policy.action_mean(obs)
    elapsed = time.perf_counter() - start
    # np.clip keeps NaN, so a broken output is still caught by the caller's finiteness check.
    action = np.clip(mean, runtime.policy.action_low, runtime.policy.action_high)
    return np.asarray(action, dtype=np.float64), elapsed
