"""policy_server's real-time options (issue 15): SCHED_FIFO and CPU pinning of every thread.

A real process is started with `realtime_priority` / `cpu_affinity` and its threads are read
back from /proc; values the machine cannot give are refused at start (exit 2, one line).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cgrpo_ros.deploy.realtime import realtime_allowed
from cgrpo_ros.testing.ros_processes import (
    probe_node,
    process_output,
    run_to_exit,
    start_node_process,
    stop_process,
    wait_for,
)

pytest.importorskip("rclpy")
from std_msgs.msg import String

from cgrpo_ros.testing.policies import reach_task_spec, write_constant_policy

pytestmark = pytest.mark.integration
SERVER = "cgrpo_ros.nodes.policy_server"
STARTUP_TIMEOUT_S = 40.0


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    task = reach_task_spec()
    assert task.rest_action is not None
    path = tmp_path_factory.mktemp("realtime") / "constant.onnx"
    return write_constant_policy(path, task.rest_action, task)


def _threads(pid: int) -> list[tuple[int, int, list[int]]]:
    rows = []
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        try:
            rows.append(
                (
                    os.sched_getscheduler(tid),
                    os.sched_getparam(tid).sched_priority,
                    sorted(os.sched_getaffinity(tid)),
                )
            )
        except ProcessLookupError:
            continue
    return rows


def test_every_server_thread_runs_sched_fifo_on_the_chosen_cpu(
    ros_env: dict[str, str], model: Path
) -> None:
    reason = realtime_allowed()
    if reason:
        pytest.skip(reason)
    statuses: list[dict[str, object]] = []
    proc = start_node_process(
        SERVER, ros_env,
        ros_args=["-p", f"model_path:={model}", "-p", "realtime_priority:=10",
                  "-p", "cpu_affinity:=[0]", "-p", "status_rate_hz:=20.0"],
    )  # fmt: skip
    try:
        with probe_node(ros_env, "realtime_probe") as (node, executor):
            node.create_subscription(
                String, "/policy_server/status", lambda m: statuses.append(json.loads(m.data)), 10
            )
            started = wait_for(
                lambda: bool(statuses), STARTUP_TIMEOUT_S, lambda t: executor.spin_once(t)
            )
            assert started, process_output(proc)
        assert statuses[-1]["scheduling"] == "SCHED_FIFO priority 10, CPUs [0]", statuses[-1]
        threads = _threads(proc.pid)
        assert len(threads) > 3, threads  # rclpy, Fast DDS and executor threads, not only main
        assert all(t == (os.SCHED_FIFO, 10, [0]) for t in threads), threads
    finally:
        code = stop_process(proc)
    assert code == 0, process_output(proc)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (["cpu_affinity:=[4095]"], ["parameter 'cpu_affinity'", "CPUs [4095] are not available"]),
        (["realtime_priority:=99"], ["realtime_priority"]),  # 99 is the kernel's; range 0-98
    ],
)
def test_scheduling_the_machine_cannot_give_is_refused(
    ros_env: dict[str, str], model: Path, params: list[str], expected: list[str]
) -> None:
    args = ["-p", f"model_path:={model}"]
    for item in params:
        args += ["-p", item]
    code, output = run_to_exit(
        [sys.executable, "-m", SERVER, "--ros-args", *args], ros_env, STARTUP_TIMEOUT_S
    )
    assert code == 2 and "Traceback" not in output, output
    for text in expected:
        assert text in output, output
