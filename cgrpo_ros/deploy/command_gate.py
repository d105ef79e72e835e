"""What the policy server sends each control tick: the safety state machine (no ROS).

Modes: DISABLED (start; hold), ENABLED (policy, blended in), ESTOP (hold, latched until an
explicit reset). Every command, held or from the policy, goes through one JointRateLimiter,
so the published stream respects the velocity, acceleration and position limits whatever
happens (issue 4): a hold is a stop at the acceleration limit, never a jump.

Holding: the target becomes the point where the joint comes to rest braking at its
acceleration limit from the current command velocity, so a hold never overshoots and comes
back (which the limiter would do if the hold target were the last command itself).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from cgrpo_ros.robot.rate_limiter import JointRateLimiter

FloatArray = npt.NDArray[np.float64]


class Mode(StrEnum):
    DISABLED = "disabled"
    ENABLED = "enabled"
    ESTOP = "estop"


class HoldReason(StrEnum):
    """Why a tick held instead of following the policy (counted in the status)."""

    DISABLED = "disabled"
    ESTOP = "estop"
    STALE_OBSERVATION = "stale_observation"
    BAD_OBSERVATION = "bad_observation"  # missing joint, no goal
    NONFINITE_OBSERVATION = "nonfinite_observation"
    NONFINITE_ACTION = "nonfinite_action"


def stopping_distance(step: FloatArray, delta: FloatArray) -> FloatArray:
    """Signed distance covered braking from a per-tick step `step` at δ per tick².

    Steps |p| - δ, |p| - 2δ, ... while positive: n = floor(|p| / δ) of them, summing to
    n|p| - δ n(n+1)/2. An infinite δ (no acceleration limit) stops at once.
    """
    speed = np.abs(step)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.floor(speed / delta)
        distance = n * speed - delta * n * (n + 1) / 2
    distance = np.where(np.isinf(delta) | (speed == 0), 0.0, distance)
    return np.sign(step) * np.maximum(distance, 0.0)


class CommandGate:
    """Turns (mode, policy action or a reason to hold) into a limited joint command."""

    def __init__(
        self,
        *,
        lower: npt.ArrayLike,
        upper: npt.ArrayLike,
        velocity_limit: npt.ArrayLike,
        acceleration_limit: npt.ArrayLike,
        dt: float,
        blend_time_s: float,
    ) -> None:
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt = {dt}; allowed: finite and > 0 seconds")
        if not (math.isfinite(blend_time_s) and blend_time_s >= 0):
            raise ValueError(f"blend_time_s = {blend_time_s}; allowed: finite and >= 0")
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.limiter = JointRateLimiter(
            velocity_limit=velocity_limit,
            acceleration_limit=acceleration_limit,
            lower=self.lower,
            upper=self.upper,
        )
        acc = np.nan_to_num(np.asarray(acceleration_limit, dtype=np.float64), nan=np.inf)
        self._delta = acc * dt * dt
        self.dt = dt
        self.blend_time_s = blend_time_s
        self.mode = Mode.DISABLED
        self.holds: Counter[str] = Counter()
        self.last_command: FloatArray | None = None
        self._previous_step = np.zeros(self.limiter.num_joints)
        self._hold_target: FloatArray | None = None
        self._blend_from: FloatArray | None = None
        self._blend_elapsed_s = 0.0

    @property
    def started(self) -> bool:
        return self.last_command is not None

    def start(self, current: npt.ArrayLike) -> None:
        """Begin (or begin again) at rest at the measured pose, clipped into the bounds."""
        pose = np.clip(np.asarray(current, dtype=np.float64), self.lower, self.upper)
        self.limiter.reset(pose)
        self.last_command = pose.copy()
        self._previous_step = np.zeros_like(pose)
        self._hold_target = pose.copy()

    @property
    def at_rest(self) -> bool:
        """The last command repeated the one before it and is the hold target: a hold has
        finished braking (publish_when_disabled false may go silent now, issue 19)."""
        return (
            self.last_command is not None
            and self.mode is not Mode.ENABLED
            and not self._previous_step.any()
            and self._hold_target is not None
            and bool(np.array_equal(self.last_command, self._hold_target))
        )

    def resume(self, measured: npt.ArrayLike, tolerance: float) -> bool:
        """Before enabling after a silence (publish_when_disabled false): the controller kept
        the last command, at rest, unless something else commanded the arm meanwhile (a
        simulator reset, another controller). Continue from the last command when every
        joint's measured position is within `tolerance` of it (no step at all); otherwise
        start again at rest from the measured pose, where the arm now is. True: restarted."""
        assert self.last_command is not None  # a silence only follows a start
        pose = np.asarray(measured, dtype=np.float64)
        if np.all(np.abs(pose - self.last_command) <= tolerance):
            return False
        self.start(pose)
        return True

    def enable(self) -> str:
        """DISABLED -> ENABLED (blend in from the last command). Raises if not allowed."""
        if self.mode is Mode.ESTOP:
            raise RuntimeError("emergency stop is latched; call ~/reset_estop first")
        if not self.started:
            raise RuntimeError("no joint state received yet; the current pose is unknown")
        if self.mode is Mode.ENABLED:
            return "already enabled"
        self.mode = Mode.ENABLED
        self._restart_blend()
        return f"enabled; blending in over {self.blend_time_s} s"

    def disable(self) -> str:
        if self.mode is Mode.ESTOP:
            return "emergency stop is latched (already holding)"
        self.mode = Mode.DISABLED
        self._begin_hold()
        return "disabled; holding"

    def estop(self) -> None:
        self.mode = Mode.ESTOP
        self._begin_hold()

    def reset_estop(self) -> str:
        if self.mode is not Mode.ESTOP:
            return f"no emergency stop latched (mode {self.mode.value})"
        self.mode = Mode.DISABLED
        return "emergency stop reset; disabled and holding (call ~/enable to run the policy)"

    def _restart_blend(self) -> None:
        assert self.last_command is not None
        self._blend_from = self.last_command.copy()
        self._blend_elapsed_s = 0.0

    def _begin_hold(self) -> None:
        if self.last_command is None:
            return
        target = self.last_command + stopping_distance(self._previous_step, self._delta)
        self._hold_target = np.clip(target, self.lower, self.upper)

    def tick(self, action: FloatArray | None, hold_reason: HoldReason | None = None) -> FloatArray:
        """The command for this tick. `action`: the policy's (clipped) output, or None with
        the reason to hold. Must not be called before `start`."""
        if self.last_command is None:
            raise RuntimeError("CommandGate.tick() before start(current_pose)")
        if self.mode is not Mode.ENABLED:
            hold_reason = HoldReason.ESTOP if self.mode is Mode.ESTOP else HoldReason.DISABLED
        elif action is not None and not np.isfinite(action).all():
            hold_reason = HoldReason.NONFINITE_ACTION
        if hold_reason is not None or action is None:
            reason = hold_reason or HoldReason.BAD_OBSERVATION
            self.holds[reason.value] += 1
            if self._blend_from is not None or self._hold_target is None:
                self._begin_hold()  # the policy was driving until now
            self._blend_from = None
            assert self._hold_target is not None
            target = self._hold_target
        else:
            if self._blend_from is None:  # (re)starting after a hold: blend in again
                self._restart_blend()
            assert self._blend_from is not None
            self._blend_elapsed_s += self.dt
            alpha = (
                1.0
                if self.blend_time_s == 0
                else min(1.0, self._blend_elapsed_s / self.blend_time_s)
            )
            target = self._blend_from + alpha * (np.asarray(action, np.float64) - self._blend_from)
        command = self.limiter.limit(target, self.dt)
        self._previous_step = command - self.last_command
        self.last_command = command
        return command

    def limiting_summary(self, joints: Sequence[str]) -> dict[str, dict[str, float]]:
        """How often and how hard each limit acted per joint since start (for ~/status)."""
        stats = self.limiter.stats
        fields = {
            "velocity": stats.velocity,
            "acceleration": stats.acceleration,
            "bounds": stats.bounds,
        }
        out: dict[str, dict[str, float]] = {}
        for name, limit in fields.items():
            out[f"{name}_count"] = dict(zip(joints, limit.count.tolist(), strict=True))
            excess = np.round(limit.max_excess, 6).tolist()
            out[f"{name}_max_excess"] = dict(zip(joints, excess, strict=True))
        out["braking_count"] = dict(zip(joints, stats.braking_count.tolist(), strict=True))
        return out

    @property
    def blending(self) -> bool:
        return (
            self.mode is Mode.ENABLED
            and self._blend_from is not None
            and self._blend_elapsed_s < self.blend_time_s
        )
