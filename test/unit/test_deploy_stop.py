"""`cgrpo deploy`'s stop_all: a node that does not stop on SIGINT leaves its stacks in the log.

A flake in test_cgrpo_deploy.py (sim_bridge not gone 10 s after SIGINT, on a loaded machine)
could not be diagnosed: the log only said "did not stop on SIGINT; killing it". Now the stuck
process gets SIGUSR1 first and the nodes answer it with every thread's stack.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgrpo_ros.cli import deploy as cli_deploy

REPO_ROOT = Path(__file__).resolve().parents[2]

STUCK_NODE = """
import signal, sys, time
from cgrpo_ros.nodes.params import enable_stack_dump_signal
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a shutdown that never ends
enable_stack_dump_signal()

def stuck_in_shutdown():
    print("ready", flush=True)
    time.sleep(120)

stuck_in_shutdown()
"""

CLEAN_NODE = """
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
print("ready", flush=True)
time.sleep(120)
"""


def _start(code: str, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while "ready" not in out.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, out.read_text()
        time.sleep(0.05)
    assert "ready" in out.read_text(), "the child did not start"
    return proc


def test_stop_all_dumps_the_stacks_of_a_node_that_ignores_sigint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rclpy")
    monkeypatch.setattr(cli_deploy, "STOP_TIMEOUT_S", 1.0)
    stuck_out, clean_out = tmp_path / "stuck.log", tmp_path / "clean.log"
    procs = {"stuck": _start(STUCK_NODE, stuck_out), "clean": _start(CLEAN_NODE, clean_out)}
    try:
        cli_deploy.stop_all(procs)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert procs["clean"].returncode == 0
    assert procs["stuck"].returncode == -signal.SIGKILL
    said = capsys.readouterr().err
    assert f"stuck (pid {procs['stuck'].pid}) did not stop within 1 s of SIGINT" in said
    assert "clean" not in said
    # faulthandler's dump: the main thread's frames, innermost first.
    dump = stuck_out.read_text()
    assert "most recent call first" in dump, dump
    assert "in stuck_in_shutdown" in dump, dump
