"""When the policy server ticks in event mode: on each new joint state, capped at the rate.

Issue 15: a tick computed on a timer waits up to one period for its joint state; a tick run
when the joint state arrives waits for nothing. The cap keeps a robot that publishes faster
than the control rate (or two publishers, or a flood) from driving the loop faster than the
rate the limits were set for: the rate limiter bounds the step between consecutive
commands (v·dt, a·dt²), so the number of commands per second is what turns those steps into
a physical speed.

The cap is a token bucket refilled at `1/dt` tokens per second, holding at most `burst`
tokens; a tick costs one. Hence, over any window of T seconds there are at most T/dt + burst
ticks, and two ticks are at least (2 - burst)·dt apart; a joint state that arrives up to
(burst - 1)·dt late does not cost the tick after it. With `burst` = 1.5: ticks at least half a
period apart, late arrivals up to half a period absorbed.

The fallback (a timer restarted at every tick, period `fallback_periods`·dt) ticks when no
joint state came: the watchdog's stale-observation hold and the braking of a hold need ticks
while the robot is silent. It is slower than the rate on purpose, so that it never pre-empts a
joint state that is only a little late.
"""

from __future__ import annotations

import math

# Tokens the bucket holds at most (see the module doc for what this allows).
DEFAULT_BURST = 1.5
# Silence, in periods, after which the fallback timer ticks with the newest (older) state.
FALLBACK_PERIODS = 1.5


class TickTrigger:
    """Token-bucket rate cap for event-triggered ticks (no ROS; times in seconds)."""

    def __init__(self, dt: float, burst: float = DEFAULT_BURST) -> None:
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt = {dt}; allowed: finite and > 0 seconds")
        if not (math.isfinite(burst) and 1.0 <= burst < 2.0):
            raise ValueError(f"burst = {burst}; allowed: 1 <= burst < 2 ticks")
        self.dt = dt
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None
        self.refused = 0  # joint states that arrived too soon after the previous tick

    def _refill(self, now: float) -> None:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) / self.dt)
        self._last = now

    def on_joint_state(self, now: float) -> bool:
        """True: tick now. False: too soon after the last tick (the rate cap acted)."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False

    def on_fallback(self, now: float) -> None:
        """The fallback timer ticks (always): it only fires after a silence, so it still
        spends a token to keep the window bound, never going below empty."""
        self._refill(now)
        self._tokens = max(0.0, self._tokens - 1.0)
