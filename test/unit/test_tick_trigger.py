"""TickTrigger: the event mode's rate cap (token bucket) and its bounds (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from cgrpo_ros.deploy.tick_trigger import TickTrigger

DT = 0.002


def ticks_at(arrivals: np.ndarray, trigger: TickTrigger) -> np.ndarray:
    return np.array([t for t in arrivals if trigger.on_joint_state(float(t))])


def test_every_joint_state_ticks_at_the_rate_even_with_jitter() -> None:
    rng = np.random.default_rng(0)
    # Arrivals on the rate's grid, each up to 0.45 periods late: none is refused.
    arrivals = np.arange(5000) * DT + rng.uniform(0.0, 0.45 * DT, 5000)
    trigger = TickTrigger(DT)
    assert ticks_at(arrivals, trigger).size == 5000
    assert trigger.refused == 0


@pytest.mark.parametrize("speed_up", [2.0, 3.3, 10.0])
def test_a_faster_publisher_is_capped_at_the_rate(speed_up: float) -> None:
    arrivals = np.arange(20000) * DT / speed_up
    trigger = TickTrigger(DT)
    ticks = ticks_at(arrivals, trigger)
    window = arrivals[-1] - arrivals[0]
    # At most T/dt + burst ticks in any window; nearly the rate itself over a long one.
    assert ticks.size <= window / DT + trigger.burst
    assert ticks.size >= window / DT - 2 * speed_up
    assert trigger.refused == arrivals.size - ticks.size


def test_window_bound_and_spacing_for_random_floods() -> None:
    rng = np.random.default_rng(1)
    arrivals = np.sort(rng.uniform(0.0, 4.0, 20000))  # 5 kHz, Poisson-like
    trigger = TickTrigger(DT)
    ticks = ticks_at(arrivals, trigger)
    assert np.diff(ticks).min() >= (2 - trigger.burst) * DT - 1e-12
    for width in (DT, 10 * DT, 0.1):
        start = np.searchsorted(ticks, ticks - width, side="left")
        in_window = np.arange(ticks.size) - start + 1  # ticks in (t - width, t]
        assert in_window.max() <= width / DT + trigger.burst


def test_fallback_spends_a_token_but_never_below_empty() -> None:
    trigger = TickTrigger(DT)
    assert trigger.on_joint_state(0.0)
    trigger.on_fallback(1.5 * DT)  # after a silence: full bucket -> 0.5
    assert not trigger.on_joint_state(1.6 * DT)  # 0.6 tokens: too soon after the fallback
    assert trigger.on_joint_state(2.0 * DT)  # 1.0 token again


@pytest.mark.parametrize(("dt", "burst"), [(0.0, 1.5), (float("nan"), 1.5), (DT, 0.5), (DT, 2.0)])
def test_bad_settings_are_refused(dt: float, burst: float) -> None:
    with pytest.raises(ValueError, match="allowed"):
        TickTrigger(dt, burst)
