"""Process supervision for the commands that start nodes (`cgrpo train-sim`, `cgrpo deploy`).

One way to start a node process with its parameters, to notice Ctrl-C / SIGTERM, and to stop
processes: SIGINT, a grace period, then SIGUSR1 (the nodes answer it with every thread's stack:
params.enable_stack_dump_signal) so the log says where a shutdown was stuck, then SIGKILL.

Only the standard library is imported: the CLI must start fast.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STACK_DUMP_WAIT_S = 2.0  # for the stack dump of a process that did not stop, before SIGKILL
# Same value as cgrpo_ros.nodes.params.STACK_DUMP_SIGNAL (not imported: that imports rclpy).
STACK_DUMP_SIGNAL = signal.SIGUSR1


def yaml_str(value: str) -> str:
    """A string for `-p name:=value`, which parses the value as YAML: quoted, so "123" or "on"
    stay strings."""
    return json.dumps(value)


def node_command(
    module: str, node_name: str, params_file: Path | None, params: Mapping[str, Any]
) -> list[str]:
    """argv of `python -m <module>` as node `node_name` with a parameter file and parameters.

    Parameters become `-p <node>:<name>:=<value>`: a plain `-p` is a `/**` rule, which the
    parameter file's own `<node>:` section would override (rcl prefers the node's name).
    """
    argv = [sys.executable, "-m", module, "--ros-args"]
    if params_file is not None:
        argv += ["--params-file", str(params_file)]
    argv += ["-r", f"__node:={node_name}"]
    for key, value in params.items():
        argv += ["-p", f"{node_name}:{key}:={value}"]
    return argv


def stop_processes(
    procs: Mapping[str, subprocess.Popen[Any]], timeout: float, who: str
) -> list[str]:
    """SIGINT (what Ctrl-C sends) to every process still running; the ones still there after
    `timeout` s get SIGUSR1 (their stacks), then SIGKILL. Returns the names that were stuck."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    stuck = {name: proc for name, proc in procs.items() if proc.poll() is None}
    for name, proc in stuck.items():
        print(
            f"{who}: {name} (pid {proc.pid}) did not stop within {timeout:.0f} s of SIGINT; "
            "its threads' stacks (SIGUSR1) follow, then it is killed",
            file=sys.stderr,
            flush=True,
        )
        proc.send_signal(STACK_DUMP_SIGNAL)
    deadline = time.monotonic() + STACK_DUMP_WAIT_S
    for name, proc in stuck.items():
        try:  # a process past its Python finalization has no handler: SIGUSR1 ends it
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{who}: killing {name}", file=sys.stderr, flush=True)
            proc.kill()
            proc.wait()
    return list(stuck)


class StopRequests:
    """Records SIGINT/SIGTERM; the supervision loop polls it.

    A plain list entry, not an exception: a KeyboardInterrupt raised inside Popen.poll()
    between its lock's acquire and release would leave the lock held, and every later wait()
    on that process would then wait for a lock nobody releases. SIGINT gets a handler of its
    own too: a process started with SIGINT ignored (a shell's background job, nohup) inherits
    SIG_IGN, so `kill -INT` would otherwise do nothing.
    """

    def __init__(self) -> None:
        self.signals: list[str] = []
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return bool(self.signals)

    def _record(self, signum: int, _frame: object) -> None:
        if not self.signals:  # SIGTERM (systemd, docker stop) stops the nodes like Ctrl-C
            self.signals.append(signal.Signals(signum).name)

    def install(self) -> None:
        self._previous = {
            s: signal.signal(s, self._record) for s in (signal.SIGINT, signal.SIGTERM)
        }

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
