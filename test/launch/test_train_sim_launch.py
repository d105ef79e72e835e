"""launch_testing test of launch/train_sim.launch.py (needs a ROS 2 install with cgrpo_ros built).

Run in a sourced workspace after `colcon build`:
    launch_test test/launch/test_train_sim_launch.py      (or pytest with launch_testing's plugin)
Skipped where launch_testing is missing (a pip-only install: it is not on PyPI).
"""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import pytest

pytest.importorskip(
    "launch_testing",
    reason="launch_testing is not installed: it ships with ROS 2 (Jazzy/Kilted), not on PyPI; "
    "`cgrpo train-sim` and test/integration/test_training_stack.py cover the same nodes",
)
import launch_testing
import launch_testing.actions
import launch_testing.asserts
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

REPO = Path(__file__).resolve().parents[2]
UPDATE_TIMEOUT_S = 180.0


@pytest.mark.launch_test
def generate_test_description() -> tuple[LaunchDescription, dict[str, object]]:
    run_dir = Path(tempfile.mkdtemp(prefix="cgrpo_launch_test_")) / "run"
    train_sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "train_sim.launch.py")),
        launch_arguments={
            "params_file": str(REPO / "config" / "train_sim.yaml"),
            "env_id": "InvertedPendulum-v5",
            "num_workers": "2",
            "num_policies": "2",
            "num_groups": "2",
            # Long enough that the launch is still up when the active test has seen an update;
            # launch_testing then stops it and the learner writes its final files.
            "iterations": "50",
            "steps_per_iteration": "128",
            "run_dir": str(run_dir),
        }.items(),
    )
    return (
        LaunchDescription([train_sim, launch_testing.actions.ReadyToTest()]),
        {"run_dir": run_dir},
    )


class TestTrainSimRuns(unittest.TestCase):
    def test_learner_updates_with_two_workers(self, proc_output: object) -> None:
        # Both workers reported in, and the learner finished an update on their batches.
        proc_output.assertWaitFor(  # type: ignore[attr-defined]
            "worker rollout_worker_1: policies [1]", timeout=UPDATE_TIMEOUT_S
        )
        proc_output.assertWaitFor("iteration 1/50", timeout=UPDATE_TIMEOUT_S)  # type: ignore[attr-defined]


@launch_testing.post_shutdown_test()
class TestTrainSimShutdown(unittest.TestCase):
    def test_every_node_exits_cleanly(self, proc_info: object) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)  # type: ignore[arg-type]

    def test_learner_wrote_its_final_files(self, run_dir: Path) -> None:
        # Stopped by launch_testing (SIGINT): the learner still writes checkpoint + summary.
        self.assertTrue((run_dir / "summary.json").is_file())
        self.assertTrue((run_dir / "checkpoints" / "latest.ckpt").is_file())
        self.assertTrue((run_dir / "policy_0.onnx").is_file())
