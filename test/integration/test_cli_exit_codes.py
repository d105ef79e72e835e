"""`cgrpo train-sim` and `cgrpo deploy` fail, naming the node, when one of their nodes fails.

The pip-path twins of test/launch/test_launch_exit_codes.py (which checks `ros2 launch` on a
ROS install): one node refuses to start (exit code 2), the command stops the others and exits
non-zero with a line naming the node and its code. Real processes on an isolated DDS domain,
each command run in its own temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cgrpo_ros.testing.ros_processes import REPO_ROOT, isolated_ros_env

pytest.importorskip("rclpy")
pytestmark = pytest.mark.integration

COMMAND_TIMEOUT_S = 180.0
TRAIN = ["--env", "InvertedPendulum-v5", "--iterations", "1", "--steps-per-iteration", "64"]


def run_cgrpo(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cgrpo_ros.cli", *args],
        cwd=cwd,
        env=isolated_ros_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def test_train_sim_fails_when_the_learner_refuses_to_start(tmp_path: Path) -> None:
    # K = 3 groups > N = 2 policies: the learner refuses its configuration (exit code 2).
    result = run_cgrpo(["train-sim", *TRAIN, "--groups", "3", "--run-dir", "run"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "cgrpo train-sim: the learner exited with code 2; workers stopped" in result.stderr
    assert "num_groups=3 exceeds num_policies=2" in result.stderr, output


def test_train_sim_fails_when_a_worker_refuses_to_start(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO_ROOT / "config" / "train_sim.yaml").read_text())
    params["/**"]["ros__parameters"]["backend"] = "turbo"  # the worker refuses it (exit 2)
    params_file = tmp_path / "bad_worker.yaml"
    params_file.write_text(yaml.safe_dump(params))
    result = run_cgrpo(
        ["train-sim", *TRAIN, "--params-file", str(params_file), "--run-dir", "run"], tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "cgrpo train-sim: rollout_worker_0 exited with code 2; stopping all nodes" in (
        result.stderr
    ), output
    assert "'backend'" in result.stderr and "turbo" in result.stderr, output


def test_deploy_fails_when_the_policy_server_refuses_the_model(tmp_path: Path) -> None:
    model = tmp_path / "corrupt.onnx"
    model.write_bytes(b"\x08\x07not an onnx protobuf" * 10)  # exists, so the server loads it
    result = run_cgrpo(["deploy", str(model), "--use-sim"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "cgrpo deploy: policy_server exited with code 2; stopping ['sim_bridge']" in (
        result.stderr
    ), output
    assert "not a valid ONNX model" in output, output
