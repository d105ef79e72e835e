"""JointRateLimiter: hand-computed steps, validation, and property tests of every limit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cgrpo_ros.robot.rate_limiter import (
    JointRateLimiter,
    max_step_to_stop_within,
    steps_to_reach,
)

NAN = float("nan")
TOL = 1e-9


def make(v: float = NAN, a: float = NAN, low: float = NAN, high: float = NAN) -> JointRateLimiter:
    limiter = JointRateLimiter(
        velocity_limit=[v], acceleration_limit=[a], lower=[low], upper=[high]
    )
    limiter.reset([0.0])
    return limiter


def test_no_limits_passes_target_through() -> None:
    limiter = make()
    assert limiter.limit([5.0], 0.01)[0] == 5.0


def test_velocity_limit_alone() -> None:
    limiter = make(v=2.0)  # 2 rad/s * 0.1 s = 0.2 per step
    assert limiter.limit([1.0], 0.1)[0] == pytest.approx(0.2)
    assert limiter.limit([1.0], 0.1)[0] == pytest.approx(0.4)
    assert limiter.limit([-1.0], 0.1)[0] == pytest.approx(0.2)  # no acceleration limit
    stats = limiter.stats
    assert stats.velocity.count[0] == 3
    assert stats.velocity.max_excess[0] == pytest.approx(14.0 - 2.0)  # |-1 - 0.4| / 0.1 - 2


def test_acceleration_limit_alone_ramps_then_brakes() -> None:
    limiter = make(a=10.0)  # δ = 10 * 0.1² = 0.1 per step²
    # From rest the steps grow by at most δ: 0.1, 0.2; then braking: 0.2, 0.1 lands on 0.6
    # (control_toolbox would take 0.1, 0.2, 0.3 and overshoot to 1.0 before turning back).
    outputs = [limiter.limit([0.6], 0.1)[0] for _ in range(6)]
    assert outputs == pytest.approx([0.1, 0.3, 0.5, 0.6, 0.6, 0.6])
    assert outputs[3] == 0.6  # exactly, not approximately
    steps = np.diff([0.0, *outputs])
    assert np.all(np.abs(np.diff([0.0, *steps])) <= 0.1 + TOL)


def test_max_step_to_stop_within_matches_the_sum() -> None:
    delta = np.array(0.1)
    for distance in [0.0, 0.05, 0.1, 0.3, 0.6, 0.61, 1.0, 7.3]:
        d = float(max_step_to_stop_within(np.array(distance), delta))
        covered = sum(max(d - k * 0.1, 0.0) for k in range(1000))
        assert covered == pytest.approx(distance, abs=1e-12)
    assert float(max_step_to_stop_within(np.array(0.3), np.array(np.inf))) == 0.3


def test_bounds_limit_alone_clips() -> None:
    limiter = make(low=-0.5, high=0.5)
    assert limiter.limit([2.0], 0.1)[0] == 0.5
    assert limiter.limit([-2.0], 0.1)[0] == -0.5
    assert limiter.stats.bounds.count[0] == 2
    assert limiter.stats.bounds.max_excess[0] == pytest.approx(1.5)


def test_all_limits_together_never_break_the_bound() -> None:
    # control_toolbox would clamp at 0.5 after arriving with speed (a huge deceleration).
    limiter = make(v=1.0, a=5.0, low=-0.5, high=0.5)
    dt, previous, previous_step = 0.05, 0.0, 0.0
    for _ in range(200):
        out = float(limiter.limit([10.0], dt)[0])
        step = out - previous
        assert abs(step) <= 1.0 * dt + TOL
        assert abs(step - previous_step) <= 5.0 * dt * dt + TOL
        assert out <= 0.5
        previous, previous_step = out, step
    assert previous == 0.5


def test_nan_disables_only_that_limit_per_joint() -> None:
    limiter = JointRateLimiter(
        velocity_limit=[1.0, NAN], acceleration_limit=[NAN, NAN], lower=[NAN, -1.0], upper=[NAN, 1]
    )
    limiter.reset([0.0, 0.0])
    assert limiter.limit([5.0, 5.0], 0.1) == pytest.approx([0.1, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"velocity_limit": [1.0, 1.0]}, "sizes differ"),
        ({"velocity_limit": [0.0]}, "velocity_limit[0] is 0.0"),
        ({"acceleration_limit": [-1.0]}, "acceleration_limit[0] is -1.0"),
        ({"lower": [2.0]}, "lower[0] is 2.0 > upper[0] = 1.0"),
        ({"upper": [[1.0]]}, "upper has shape (1, 1)"),
    ],
)
def test_validation_names_field_and_value(kwargs: dict[str, list[float]], needle: str) -> None:
    args = {"velocity_limit": [1.0], "acceleration_limit": [1.0], "lower": [-1.0], "upper": [1.0]}
    with pytest.raises(ValueError, match="allowed") as info:
        JointRateLimiter(**(args | kwargs))
    assert needle in str(info.value)


def test_non_finite_target_and_bad_use_raise() -> None:
    limiter = JointRateLimiter(velocity_limit=[1], acceleration_limit=[1], lower=[-1], upper=[1])
    with pytest.raises(RuntimeError, match="before reset"):
        limiter.limit([0.0], 0.1)
    with pytest.raises(ValueError, match=r"current\[0\] is 2.0"):
        limiter.reset([2.0])
    limiter.reset([0.0])
    with pytest.raises(ValueError, match=r"target\[0\] is nan"):
        limiter.limit([NAN], 0.1)
    with pytest.raises(ValueError, match=r"dt is 0\.0"):
        limiter.limit([0.0], 0.0)


limit_value = st.one_of(st.just(NAN), st.floats(0.1, 10.0))


@settings(max_examples=150, deadline=None)
@given(
    v=limit_value,
    a=limit_value,
    half_range=st.one_of(st.just(NAN), st.floats(0.1, 3.0)),
    dt=st.floats(0.002, 0.1),
    targets=st.lists(st.floats(-5.0, 5.0), min_size=1, max_size=60),
)
def test_every_limit_holds_for_any_target_sequence(
    v: float, a: float, half_range: float, dt: float, targets: list[float]
) -> None:
    limiter = make(v=v, a=a, low=-half_range, high=half_range)
    previous, previous_step = 0.0, 0.0
    for target in targets:
        out = float(limiter.limit([target], dt)[0])
        step = out - previous
        if not math.isnan(v):
            assert abs(step) <= v * dt * (1 + 1e-9) + TOL
        if not math.isnan(a):
            assert abs(step - previous_step) <= a * dt * dt * (1 + 1e-9) + TOL
        if not math.isnan(half_range):
            assert -half_range <= out <= half_range  # exactly, no tolerance
        previous, previous_step = out, step


@settings(max_examples=150, deadline=None)
@given(
    v=limit_value,
    a=limit_value,
    dt=st.floats(0.005, 0.1),
    start=st.floats(-2.0, 2.0),
    target=st.floats(-2.0, 2.0),
)
# ~1,000 braking steps accumulated 7e-12 rad of rounding past the goal (found by hypothesis).
@example(v=math.nan, a=0.1, dt=0.0078125, start=0.0, target=1.5)
def test_constant_target_reached_exactly_without_overshoot(
    v: float, a: float, dt: float, start: float, target: float
) -> None:
    limiter = make(v=v, a=a, low=-2.0, high=2.0)
    limiter.reset([start])
    velocity_step = v * dt if not math.isnan(v) else math.inf
    delta = a * dt * dt if not math.isnan(a) else math.inf
    bound = steps_to_reach(abs(target - start), velocity_step, delta)
    low, high = min(start, target), max(start, target)
    outputs = [float(limiter.limit([target], dt)[0]) for _ in range(bound + 3)]
    assert all(low <= out <= high for out in outputs), "overshoot"
    assert outputs[max(bound - 1, 0) :] == [target] * (len(outputs) - max(bound - 1, 0))


class VectorisedReference:
    """The numpy `limit` the per-joint loop replaced (issue 15), kept here as its oracle:
    the same formulas on whole arrays. The loop must give the same commands bit for bit."""

    def __init__(self, v: np.ndarray, a: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        self.v = np.nan_to_num(v, nan=np.inf)
        self.a = np.nan_to_num(a, nan=np.inf)
        self.low = np.where(np.isnan(low), -np.inf, low)
        self.high = np.where(np.isnan(high), np.inf, high)

    def reset(self, current: np.ndarray) -> None:
        self.x, self.p = current.copy(), np.zeros_like(current)

    def limit(self, target: np.ndarray, dt: float) -> np.ndarray:
        x, p = self.x, self.p
        velocity_step, delta = self.v * dt, self.a * dt * dt
        goal = np.clip(target, self.low, self.high)
        error = goal - x
        step = np.sign(error) * max_step_to_stop_within(np.abs(error), delta)
        step = np.clip(step, p - delta, p + delta)
        step = np.clip(step, -velocity_step, velocity_step)
        step = np.clip(
            step,
            -max_step_to_stop_within(x - self.low, delta),
            max_step_to_stop_within(self.high - x, delta),
        )
        overshoot = np.sign(error) * (step - error)
        rounding = 1e-9 * delta + 1e-10 * (1.0 + np.abs(goal))
        step = np.where((overshoot > 0) & (overshoot <= rounding), error, step)
        command = np.clip(np.where(step == error, goal, x + step), self.low, self.high)
        self.p, self.x = command - x, command
        return command


@pytest.mark.parametrize("seed", range(6))
def test_per_joint_loop_equals_the_vectorised_formulas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 7
    v = rng.uniform(0.5, 3.0, n)
    a = rng.uniform(5.0, 40.0, n)
    low, high = -rng.uniform(0.5, 3.0, n), rng.uniform(0.5, 3.0, n)
    # Disabled limits (NaN) on some joints, as robot configs may have.
    v[0], a[1], low[2], high[3] = NAN, NAN, NAN, NAN
    limiter = JointRateLimiter(velocity_limit=v, acceleration_limit=a, lower=low, upper=high)
    reference = VectorisedReference(v, a, low, high)
    start = np.zeros(n)
    limiter.reset(start)
    reference.reset(start)
    dt = 0.002 if seed % 2 else 0.02
    target = rng.uniform(-4.0, 4.0, n)
    for k in range(600):
        if k % 37 == 0:  # jumps, holds and targets outside the bounds
            target = rng.uniform(-4.0, 4.0, n)
        elif k % 5 == 0:
            target = target + rng.normal(0.0, 0.05, n)
        got, want = limiter.limit(target, dt), reference.limit(target, dt)
        assert np.array_equal(got, want), (k, got - want)
