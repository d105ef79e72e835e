"""Per-joint rate limiting of policy commands (no ROS): the deploy-time smoothness guarantee.

The limits follow ros2_control's `control_toolbox::RateLimiter`, applied to consecutive
commands a_{t-2}, a_{t-1}, a_t sent every `dt` seconds, per joint:

1. acceleration: |(a_t - a_{t-1}) - (a_{t-1} - a_{t-2})| <= acceleration_limit * dt²
2. velocity:     |a_t - a_{t-1}| <= velocity_limit * dt
3. bounds:       lower <= a_t <= upper

A NaN limit disables that limit (as in control_toolbox). Like control_toolbox, the differences
are of commands, not of dt-scaled velocities: the guarantees hold for a fixed control period.

Braking (the one departure from control_toolbox): clamping the acceleration alone makes a
joint that is moving fast arrive at its target with speed, overshoot, and oscillate around it,
and clamping the result into [lower, upper] afterwards breaks the acceleration limit at the
bound. Here each step is also limited to the largest step from which the joint can still stop
(decelerating at the limit) exactly at the target and before either bound. So, for a fixed dt,
starting at rest inside the bounds:
- all three limits hold at every step, for any target sequence;
- a constant target (clipped into the bounds) is reached exactly, without overshoot, in at
  most ceil(D / (v dt)) + 2 ceil(v / (a dt)) + 2 steps for a distance D (see
  `steps_to_reach`), i.e. a discrete trapezoidal velocity profile;
- a target that moves towards the joint faster than it can brake is overshot (the
  acceleration limit takes precedence over the target; never over the bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def max_step_to_stop_within(distance: FloatArray, delta: FloatArray) -> FloatArray:
    """Largest step d >= 0 after which the joint can still stop within `distance`.

    Braking at the limit, the steps after d are d - δ, d - 2δ, ... (δ = acceleration_limit·dt²)
    while positive, so the distance covered is f(d) = Σ_k max(d - kδ, 0). f is increasing and
    piecewise linear with f(nδ) = δ n(n+1)/2, so f(d) = distance is solved in closed form:
    n = ⌊(√(1 + 8·distance/δ) - 1)/2⌋, d = (distance + δ n(n+1)/2) / (n + 1).
    A distance within one δ gives d = distance exactly, which is how the target is reached.
    """
    distance = np.maximum(distance, 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        n = np.floor((np.sqrt(1.0 + 8.0 * distance / delta) - 1.0) / 2.0)
        # Undo a rounding error of the square root at the breakpoints f(nδ).
        n = np.where(delta * n * (n + 1) / 2 > distance, n - 1, n)
        n = np.where(delta * (n + 1) * (n + 2) / 2 <= distance, n + 1, n)
        step = (distance + delta * n * (n + 1) / 2) / (n + 1)
    step = np.where(np.isinf(delta), distance, step)  # no acceleration limit: no braking
    return np.where(np.isinf(distance), np.inf, step)


def steps_to_reach(distance: float, velocity_step: float, delta: float) -> int:
    """Upper bound on the steps from rest to rest over `distance` (v·dt, a·dt² per step)."""
    if distance == 0.0:
        return 0
    if math.isinf(delta):
        return math.ceil(distance / velocity_step) + 1
    if math.isinf(velocity_step):
        return 2 * math.ceil(math.sqrt(distance / delta)) + 2
    # By AM-GM this also bounds the triangular profile, 2·sqrt(D/δ) <= D/v + v/δ.
    return math.ceil(distance / velocity_step) + 2 * math.ceil(velocity_step / delta) + 2


@dataclass
class LimitStats:
    """How often (steps) and how hard (largest excess of the raw request) a limit acted."""

    count: npt.NDArray[np.int64]
    max_excess: FloatArray  # in the limit's units: rad (or m, N·m), per s, per s²


@dataclass
class RateLimiterStats:
    bounds: LimitStats
    velocity: LimitStats
    acceleration: LimitStats
    braking_count: npt.NDArray[np.int64]  # steps where braking for the goal or a bound acted


def _joint_array(name: str, value: npt.ArrayLike) -> FloatArray:
    array = np.array(value, dtype=np.float64, ndmin=1)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} has shape {array.shape}; allowed: one value per joint (1-D)")
    return array


def _check_positive_or_nan(name: str, limit: FloatArray) -> None:
    bad = ~(np.isnan(limit) | (limit > 0))
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(f"{name}[{j}] is {limit[j]}; allowed: > 0, or NaN to disable the limit")


class JointRateLimiter:
    """Limits each joint's command to velocity, acceleration and position/effort bounds."""

    def __init__(
        self,
        *,
        velocity_limit: npt.ArrayLike,
        acceleration_limit: npt.ArrayLike,
        lower: npt.ArrayLike,
        upper: npt.ArrayLike,
    ) -> None:
        arrays = {
            "velocity_limit": _joint_array("velocity_limit", velocity_limit),
            "acceleration_limit": _joint_array("acceleration_limit", acceleration_limit),
            "lower": _joint_array("lower", lower),
            "upper": _joint_array("upper", upper),
        }
        sizes = {name: a.size for name, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"limit sizes differ: {sizes}; allowed: one value per joint each")
        _check_positive_or_nan("velocity_limit", arrays["velocity_limit"])
        _check_positive_or_nan("acceleration_limit", arrays["acceleration_limit"])
        # NaN disables a limit; from here on a disabled limit is an infinite one.
        self._velocity = np.nan_to_num(arrays["velocity_limit"], nan=np.inf)
        self._acceleration = np.nan_to_num(arrays["acceleration_limit"], nan=np.inf)
        self._lower = np.where(np.isnan(arrays["lower"]), -np.inf, arrays["lower"])
        self._upper = np.where(np.isnan(arrays["upper"]), np.inf, arrays["upper"])
        if (self._lower > self._upper).any():
            j = int(np.argmax(self._lower > self._upper))
            raise ValueError(
                f"lower[{j}] is {self._lower[j]} > upper[{j}] = {self._upper[j]}; "
                "allowed: lower <= upper"
            )
        self.num_joints = int(self._lower.size)
        # Plain-float copies for the per-joint loop of `limit`.
        self._velocity_list: list[float] = self._velocity.tolist()
        self._acceleration_list: list[float] = self._acceleration.tolist()
        self._lower_list: list[float] = self._lower.tolist()
        self._upper_list: list[float] = self._upper.tolist()
        self._previous: FloatArray | None = None  # a_{t-1}
        self._previous_step = np.zeros(self.num_joints)  # a_{t-1} - a_{t-2}
        self._stats = self._empty_stats()

    def _empty_stats(self) -> RateLimiterStats:
        def zeros() -> LimitStats:
            return LimitStats(np.zeros(self.num_joints, np.int64), np.zeros(self.num_joints))

        return RateLimiterStats(zeros(), zeros(), zeros(), np.zeros(self.num_joints, np.int64))

    def _check_joints(self, name: str, value: npt.ArrayLike) -> FloatArray:
        array = np.asarray(value, dtype=np.float64)
        if array.shape != (self.num_joints,):
            raise ValueError(f"{name} has shape {array.shape}; allowed: ({self.num_joints},)")
        if not np.isfinite(array).all():
            j = int(np.argmax(~np.isfinite(array)))
            raise ValueError(f"{name}[{j}] is {array[j]}; allowed: finite (hold the last command)")
        return array

    def reset(self, current: npt.ArrayLike) -> None:
        """Start from `current` at rest (both previous commands = current); clears the stats.

        A pose outside the bounds is refused: the first command would have to jump into them.
        """
        current = self._check_joints("current", current)
        outside = (current < self._lower) | (current > self._upper)
        if outside.any():
            j = int(np.argmax(outside))
            raise ValueError(
                f"current[{j}] is {current[j]}; allowed: within [{self._lower[j]}, "
                f"{self._upper[j]}] (move the joint inside its bounds, or widen them)"
            )
        self._previous = current.copy()
        self._previous_step = np.zeros(self.num_joints)
        self._stats = self._empty_stats()

    @property
    def last_command(self) -> FloatArray:
        """The last command sent (or the pose of the last reset), a copy."""
        if self._previous is None:
            raise RuntimeError("JointRateLimiter.last_command read before reset(current_positions)")
        return self._previous.copy()

    @property
    def stats(self) -> RateLimiterStats:
        s = self._stats

        def copy(x: LimitStats) -> LimitStats:
            return LimitStats(x.count.copy(), x.max_excess.copy())

        return RateLimiterStats(
            copy(s.bounds), copy(s.velocity), copy(s.acceleration), s.braking_count.copy()
        )

    def limit(self, target: npt.ArrayLike, dt: float) -> FloatArray:
        """The command to send this period: `target` limited per joint (see the module doc).

        A loop over joints in plain floats, not numpy: for a handful of joints, ~50 numpy calls
        on 7-element arrays cost ~0.2 ms a tick, the loop ~0.03 ms (issue 15's 1 kHz budget).
        Every operation is the vectorised formula's, in the same order, so the results are
        bit for bit those of the numpy version (test/unit/test_rate_limiter.py replays it).
        """
        if self._previous is None:
            raise RuntimeError("JointRateLimiter.limit() called before reset(current_positions)")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt is {dt}; allowed: finite and > 0 seconds")
        targets = self._check_joints("target", target).tolist()
        previous, previous_step = self._previous.tolist(), self._previous_step.tolist()
        stats = self._stats
        dt2 = dt * dt
        commands = [0.0] * self.num_joints
        for j in range(self.num_joints):
            x, p, wanted = previous[j], previous_step[j], targets[j]
            lower, upper = self._lower_list[j], self._upper_list[j]
            velocity, acceleration = self._velocity_list[j], self._acceleration_list[j]
            velocity_step = velocity * dt  # largest |a_t - a_{t-1}|
            delta = acceleration * dt * dt  # largest |second difference|
            goal = _clip(wanted, lower, upper)
            error = goal - x
            # Count each limit the raw request breaks, and by how much, in its own units.
            _record(stats.bounds, j, abs(wanted - goal))
            _record(stats.velocity, j, abs(error) / dt - velocity)
            _record(stats.acceleration, j, abs(error - p) / dt2 - acceleration)
            # Approach the goal no faster than allows stopping on it (the braking profile).
            sign = _sign(error)
            step = sign * _max_step_scalar(abs(error), delta)
            # Hard limits; later clips win if they conflict (only when dt changed).
            step = _clip(step, p - delta, p + delta)
            step = _clip(step, -velocity_step, velocity_step)
            step = _clip(
                step,
                -_max_step_scalar(x - lower, delta),
                _max_step_scalar(upper - x, delta),
            )
            # What control_toolbox would have sent, to count when braking made a difference.
            naive = _clip(_clip(error, p - delta, p + delta), -velocity_step, velocity_step)
            if step != naive:
                stats.braking_count[j] += 1
            # Rounding accumulated along the braking profile can leave the last step a little
            # past the goal (forced there by the acceleration limit): land on the goal
            # instead, bending the acceleration limit by at most 1e-9 of itself or 1e-10
            # (rad, m) absolute. (Over ~1,000 braking steps the rounding reaches ~1e-11:
            # 1e-12 was found too tight.)
            overshoot = sign * (step - error)
            rounding = 1e-9 * delta + 1e-10 * (1.0 + abs(goal))
            if overshoot > 0 and overshoot <= rounding:
                step = error
            # Land exactly on the goal: x + (goal - x) may differ from goal by one rounding.
            command = goal if step == error else x + step
            commands[j] = _clip(command, lower, upper)
        command_array = np.array(commands, dtype=np.float64)
        self._previous_step = command_array - self._previous
        self._previous = command_array
        return command_array.copy()


def _clip(value: float, low: float, high: float) -> float:
    """np.clip for one float with low <= high (what every call here passes)."""
    return min(max(value, low), high)


def _sign(value: float) -> float:
    """np.sign for one float (no NaN reaches it: targets are checked finite)."""
    return 1.0 if value > 0 else (-1.0 if value < 0 else 0.0)


def _max_step_scalar(distance: float, delta: float) -> float:
    """`max_step_to_stop_within` for one joint, the same operations in the same order."""
    distance = max(distance, 0.0)
    if math.isinf(delta):
        return distance  # no acceleration limit: no braking
    if math.isinf(distance):
        return math.inf
    root = (math.sqrt(1.0 + 8.0 * distance / delta) - 1.0) / 2.0
    n = float(math.floor(root)) if math.isfinite(root) else root
    # Undo a rounding error of the square root at the breakpoints f(nδ).
    if delta * n * (n + 1) / 2 > distance:
        n = n - 1
    if delta * (n + 1) * (n + 2) / 2 <= distance:
        n = n + 1
    return (distance + delta * n * (n + 1) / 2) / (n + 1)


def _record(stats: LimitStats, joint: int, excess: float) -> None:
    """Count a limit acting on `joint` (excess > 0) and keep its largest excess."""
    if excess > 0:
        stats.count[joint] += 1
        if excess > stats.max_excess[joint]:
            stats.max_excess[joint] = excess
