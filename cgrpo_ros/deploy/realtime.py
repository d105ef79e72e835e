"""Real-time scheduling of a control process (issue 15): SCHED_FIFO and CPU pinning.

On 2 cores the policy server's tail latency is OS scheduling: the robot driver, the server,
DDS and everything else take turns, and a few hundred µs of waiting per hop add up
(docs/benchmarks.md). A real-time priority lets the control path preempt ordinary work;
pinning keeps it off a core another real-time process owns. Applied to every thread of the
process (Fast DDS, executor and rclpy threads); threads started later inherit both.

Linux only. Needs CAP_SYS_NICE or an rtprio limit (`ulimit -r`, limits.conf), as
ros2_control's own real-time loops do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

MAX_PRIORITY = 98  # 99 is the kernel's own watchdogs' level: leave it to them


class RealtimeError(OSError):
    """The scheduling asked for cannot be had; the message says why and what to change."""


def process_threads() -> list[int]:
    """The thread ids of this process."""
    return sorted(int(tid) for tid in os.listdir("/proc/self/task"))


def apply_realtime(priority: int, cpus: Sequence[int] = ()) -> str:
    """SCHED_FIFO at `priority` (1..MAX_PRIORITY; 0: leave the scheduling alone) and the CPU
    set `cpus` (empty: leave it alone) for every thread of this process. Returns what was
    applied, for the log."""
    if not 0 <= priority <= MAX_PRIORITY:
        raise RealtimeError(f"priority {priority} is outside [0, {MAX_PRIORITY}]")
    available = sorted(os.sched_getaffinity(0)) if cpus else []
    unknown = sorted(set(cpus) - set(available))
    if unknown:
        raise RealtimeError(f"CPUs {unknown} are not available to this process ({available})")
    for tid in process_threads():
        try:
            if cpus:
                os.sched_setaffinity(tid, set(cpus))
            if priority:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
        except ProcessLookupError:
            continue  # the thread ended meanwhile
        except PermissionError as err:
            raise RealtimeError(
                f"SCHED_FIFO priority {priority} refused ({err.strerror}): give the process "
                "CAP_SYS_NICE or an rtprio limit of at least that (ulimit -r; limits.conf "
                "`@realtime - rtprio 98`), or use priority 0"
            ) from None
    parts = []
    if priority:
        parts.append(f"SCHED_FIFO priority {priority}")
    if cpus:
        parts.append(f"CPUs {sorted(set(cpus))}")
    return ", ".join(parts) or "default scheduling"


def thread_scheduling() -> list[tuple[int, int, int, list[int]]]:
    """(thread id, policy, priority, CPUs) of every thread of this process (for checks)."""
    rows = []
    for tid in process_threads():
        try:
            policy = os.sched_getscheduler(tid)
            priority = os.sched_getparam(tid).sched_priority
            cpus = sorted(os.sched_getaffinity(tid))
        except ProcessLookupError:
            continue
        rows.append((tid, policy, priority, cpus))
    return rows


def realtime_allowed() -> str:
    """'' when this process may use SCHED_FIFO, else the reason it may not."""
    if not Path("/proc/self/task").is_dir():
        return "no /proc/self/task (not Linux)"
    try:
        current = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, current[0], current[1])
    except PermissionError as err:
        return f"SCHED_FIFO refused here ({err.strerror})"
    return ""
