"""`cgrpo deploy --use-sim`: the pip-path twin of deploy.launch.py, as separate processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cgrpo_ros.testing.ros_processes import isolated_ros_env, probe_node, wait_for

pytest.importorskip("rclpy")
from std_msgs.msg import String

from cgrpo_ros.robot.config import load_robot_config
from cgrpo_ros.testing.deploy_checks import check_probe_policy_drives_the_arm
from cgrpo_ros.testing.policies import write_probe_policy

pytestmark = pytest.mark.integration

ROBOT = load_robot_config()
STARTUP_TIMEOUT_S = 40.0


@pytest.mark.parametrize("control_mode", ["event", "timer"])
def test_cgrpo_deploy_runs_both_nodes_and_stops_cleanly(tmp_path: Path, control_mode: str) -> None:
    env = isolated_ros_env()
    # The model and the checks of test/launch/test_deploy_launch.py (deploy.launch.py).
    model = write_probe_policy(tmp_path / "policy.onnx", ROBOT)
    argv = [sys.executable, "-m", "cgrpo_ros.cli", "deploy", str(model), "--use-sim",
            "--controller-name", "arm_controller", "--control-rate-hz", "25",
            "-p", f"control_mode:={control_mode}"]  # fmt: skip
    log = (tmp_path / "deploy.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with probe_node(env, "deploy_probe") as (node, executor):
            statuses: list[dict[str, Any]] = []
            node.create_subscription(
                String, "/policy_server/status", lambda m: statuses.append(json.loads(m.data)), 10
            )

            def spin(timeout: float) -> None:
                executor.spin_once(timeout_sec=timeout)

            started = wait_for(lambda: bool(statuses), STARTUP_TIMEOUT_S, spin)
            assert started, (tmp_path / "deploy.log").read_text()
            # The flags reach the nodes: a 25 Hz loop, a renamed controller topic (below).
            assert statuses[-1]["enabled"] is False
            assert statuses[-1]["control_rate_hz"] == pytest.approx(25.0)
            assert statuses[-1]["control_mode"] == control_mode
            try:
                check_probe_policy_drives_the_arm(
                    node, spin, ROBOT, command_topic="/arm_controller/commands"
                )
            except AssertionError as err:
                raise AssertionError(f"{err}\n{(tmp_path / 'deploy.log').read_text()}") from None
            assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
    output = (tmp_path / "deploy.log").read_text()
    assert code == 0, output
    assert "stopping all nodes" in output
