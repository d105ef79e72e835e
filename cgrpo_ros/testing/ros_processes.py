"""Helpers for integration tests that run real nodes as separate processes over DDS.

Isolation: each test gets its own ROS_DOMAIN_ID and discovery limited to this machine, so
tests running in parallel (or other people's nodes on the network) never see each other.
Processes write to a temporary file rather than a pipe: a chatty node can never block on a
full pipe buffer, and the output is still there to show when a test fails.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # rclpy is imported lazily, so this module loads without a ROS install
    import pytest
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

from cgrpo_ros.share import PACKAGE_ROOT as REPO_ROOT  # the checkout (or site-packages)

# Valid Fast DDS domain ids on Linux are 0..101 (ports grow with the id); 0 is the default
# domain used by people's interactive sessions, so tests stay off it.
_MIN_DOMAIN, _MAX_DOMAIN = 1, 101
_domain_counter = itertools.count()
_outputs: dict[int, IO[bytes]] = {}


def unique_domain_id() -> int:
    """A domain id derived from the pid and a per-process counter (distinct per test)."""
    span = _MAX_DOMAIN - _MIN_DOMAIN + 1
    return _MIN_DOMAIN + (os.getpid() * 7 + next(_domain_counter)) % span


def isolated_ros_env(
    domain_id: int | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """An environment for a test's ROS processes: own domain, localhost-only discovery.

    Also puts the repository root on PYTHONPATH so `python -m sim_bridge.node` and
    `python -m cgrpo_ros...` run from the source tree.
    """
    env = dict(os.environ if base is None else base)
    did = unique_domain_id() if domain_id is None else domain_id
    if not _MIN_DOMAIN - 1 <= did <= _MAX_DOMAIN:
        raise ValueError(f"domain_id = {did}: expected 0..{_MAX_DOMAIN}")
    env["ROS_DOMAIN_ID"] = str(did)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated, and conflicts with the range above
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the output file when they are written
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


def use_isolated_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private domain for this test's nodes, also set for the test process's own probe."""
    env = isolated_ros_env()
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.delenv("ROS_STATIC_PEERS", raising=False)
    return env


def node_argv(params_file: Path, module: str, name: str, params: Mapping[str, object]) -> list[str]:
    """A node's command line as the launch files give it: the shared parameter file, the node
    name, then node-specific overrides (`-p <name>:<key>:=<json value>`)."""
    argv = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params_file)]
    argv += ["-r", f"__node:={name}"]
    for key, value in params.items():
        argv += ["-p", f"{name}:{key}:={json.dumps(value)}"]
    return argv


def start_node_process(
    module_or_argv: str | Sequence[str],
    env: Mapping[str, str],
    ros_args: Sequence[str] = (),
    cwd: str | Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a node: a module name (`python -m module`) or a full argv.

    `ros_args` are appended after `--ros-args`, e.g. ["-p", "mode:=lockstep"].
    Read what it printed with `process_output(proc)`.
    """
    if isinstance(module_or_argv, str):
        argv = [sys.executable, "-m", module_or_argv]
    else:
        argv = list(module_or_argv)
    if ros_args:
        argv += ["--ros-args", *ros_args]
    # Stays open for the life of the process; process_output() reads it back.
    out = tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(
        argv,
        env=dict(env),
        cwd=str(cwd or REPO_ROOT),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    _outputs[proc.pid] = out
    return proc


def process_output(proc: subprocess.Popen[bytes]) -> str:
    """Everything the process wrote to stdout and stderr so far."""
    out = _outputs.get(proc.pid)
    if out is None:
        return ""
    out.flush()
    out.seek(0)
    return out.read().decode(errors="replace")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """Stop like Ctrl-C (SIGINT), then SIGKILL after `timeout` s. Returns the exit code.

    A node that needed SIGKILL returns a negative code, so `assert stop_process(p) == 0`
    checks that it shut down cleanly.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return int(proc.returncode)


def run_to_exit(argv: list[str], env: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """Start a node and let it end on its own within `timeout` s (stopped after that): its
    exit code and output, e.g. for a start the node must refuse."""
    proc = start_node_process(argv, env)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass  # stop_process below ends it; its code then says it did not exit by itself
    finally:
        code = stop_process(proc)
    return code, process_output(proc)


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    spin_once: Callable[[float], None] | None = None,
    period: float = 0.05,
) -> bool:
    """Poll `condition` until true or `timeout` s; `spin_once(period)` runs between polls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if spin_once is not None:
            spin_once(period)
        else:
            time.sleep(period)
    return condition()


@contextmanager
def probe_node(env: Mapping[str, str], name: str) -> Iterator[tuple[Node, SingleThreadedExecutor]]:
    """A test-side node `name` in its own rclpy context on `env`'s ROS_DOMAIN_ID.

    Yields the node and a single-threaded executor that already holds it; spin with
    `executor.spin_once(timeout_sec=...)`. Ctrl-C is left to pytest (no rclpy signal
    handlers). Executor, node and context are shut down on exit, also if setting up failed
    halfway.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions

    context = Context()
    rclpy.init(
        context=context,
        domain_id=int(env["ROS_DOMAIN_ID"]),
        signal_handler_options=SignalHandlerOptions.NO,
    )
    try:
        node = Node(name, context=context)
        try:
            executor = SingleThreadedExecutor(context=context)
            try:
                executor.add_node(node)
                yield node, executor
            finally:
                executor.shutdown(timeout_sec=1.0)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def call_service(
    node: Node,
    spin_once: Callable[[float], None],
    srv_type: Any,
    name: str,
    request: Any,
    ready_timeout: float,
    reply_timeout: float,
) -> Any:
    """Call service `name` from a probe node and spin until the reply; RuntimeError naming the
    service if it is not there within `ready_timeout` s or does not answer in `reply_timeout`."""
    client: Any = node.create_client(srv_type, name)
    try:
        if not wait_for(client.service_is_ready, ready_timeout, spin_once):
            raise RuntimeError(f"service {name} not available within {ready_timeout} s")
        future = client.call_async(request)
        if not wait_for(future.done, reply_timeout, spin_once):
            raise RuntimeError(f"service {name} did not answer in {reply_timeout} s")
        return future.result()
    finally:
        node.destroy_client(client)
