"""`cgrpo deploy --use-sim`: the pip-path twin of deploy.launch.py, as separate processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ros_helpers import isolated_ros_env, probe_node, wait_for

pytest.importorskip("rclpy")
from std_msgs.msg import Float64MultiArray, String

from cgrpo_ros.core.onnx_export import PolicyMetadata, export_policy_onnx
from cgrpo_ros.core.policy import GaussianPolicy
from sim_bridge.reach_task import ReachTask
from sim_bridge.robot_config import load_robot_config

pytestmark = pytest.mark.integration

ROBOT = load_robot_config()
STARTUP_TIMEOUT_S = 40.0


def write_model(path: Path) -> Path:
    task = ReachTask(ROBOT)  # the config's reach task: fingertip steps
    names = task.observation_names()
    policy = GaussianPolicy(len(names), task.act_dim, (8,), 0.0)
    meta = PolicyMetadata(
        policy_id=0, policy_version=1, obs_dim=len(names), act_dim=task.act_dim,
        obs_names=names, action_names=task.action_names(),
        action_low=[float(x) for x in task.action_low],
        action_high=[float(x) for x in task.action_high], task="cgrpo_ros/Arm7Reach-v0",
        obs_layout_version=2, action_mode=task.action_mode,
    )  # fmt: skip
    path.write_bytes(export_policy_onnx(policy, meta))
    return path


@pytest.mark.parametrize("control_mode", ["event", "timer"])
def test_cgrpo_deploy_runs_both_nodes_and_stops_cleanly(tmp_path: Path, control_mode: str) -> None:
    env = isolated_ros_env()
    model = write_model(tmp_path / "policy.onnx")
    argv = [sys.executable, "-m", "cgrpo_ros.cli", "deploy", str(model), "--use-sim",
            "--controller-name", "arm_controller", "--control-rate-hz", "25",
            "-p", f"control_mode:={control_mode}"]  # fmt: skip
    log = (tmp_path / "deploy.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with probe_node(env, "deploy_probe") as (node, executor):
            commands: list[list[float]] = []
            statuses: list[dict[str, Any]] = []
            # The flags reach the nodes: a renamed controller topic and a 25 Hz loop.
            node.create_subscription(
                Float64MultiArray,
                "/arm_controller/commands",
                lambda m: commands.append(list(m.data)),
                10,
            )
            node.create_subscription(
                String, "/policy_server/status", lambda m: statuses.append(json.loads(m.data)), 10
            )

            def spin(timeout: float) -> None:
                executor.spin_once(timeout_sec=timeout)

            started = wait_for(
                lambda: len(commands) >= 10 and bool(statuses), STARTUP_TIMEOUT_S, spin
            )
            assert started, (tmp_path / "deploy.log").read_text()
            assert proc.poll() is None
            # Disabled at start: it holds the pose the simulated arm reports (home).
            assert all(abs(a - b) < 1e-2 for a, b in zip(commands[-1], ROBOT.home, strict=True))
            assert statuses[-1]["enabled"] is False
            assert statuses[-1]["control_rate_hz"] == pytest.approx(25.0)
            assert statuses[-1]["control_mode"] == control_mode
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
