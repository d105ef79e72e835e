"""launch_testing: the installed train_sim.launch.py trains with two workers and stops cleanly.

Needs a ROS 2 install (launch_testing, launch_ros) and cgrpo_ros built with colcon; skipped
elsewhere. In a sourced workspace (pytest 8.x: launch_testing's plugin does not load under 9):
    launch_test src/cgrpo_ros/test/launch/test_train_sim_launch.py
    colcon test --packages-select cgrpo_ros --pytest-args test/launch
The test takes no launch arguments of its own. It includes the launch file from the installed
share (ament_index) with its default parameter file (share/cgrpo_ros/config/train_sim.yaml),
overriding env_id, num_workers, num_policies, num_groups, iterations, steps_per_iteration and
run_dir (a temporary folder, removed at the end). test/integration/test_training_stack.py runs
the same nodes with the same parameter file in CI, through `cgrpo train-sim`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import unittest
from pathlib import Path

import pytest

pytest.importorskip(
    "launch_testing",
    reason="launch_testing is not installed: it ships with ROS 2 (Jazzy/Kilted), not on PyPI; "
    "`cgrpo train-sim` and test/integration/test_training_stack.py cover the same nodes",
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `launch_test` has no pytest ini
import launch_testing
import launch_testing.actions
import launch_testing.asserts
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import GroupAction, IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource

from cgrpo_ros.testing.ros_processes import unique_domain_id
from cgrpo_ros.testing.run_files import missing_final_files

UPDATE_TIMEOUT_S = 180.0
ITERATIONS = 50
NUM_POLICIES = 2
_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []  # removed in the shutdown tests' teardown


@pytest.mark.launch_test
def generate_test_description() -> tuple[LaunchDescription, dict[str, object]]:
    scratch = tempfile.TemporaryDirectory(prefix="cgrpo_train_sim_launch_test_")
    _SCRATCH.append(scratch)
    run_dir = Path(scratch.name) / "run"
    launch_file = os.path.join(
        get_package_share_directory("cgrpo_ros"), "launch", "train_sim.launch.py"
    )
    train_sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file),
        launch_arguments={
            "env_id": "InvertedPendulum-v5",
            "num_workers": "2",
            "num_policies": str(NUM_POLICIES),
            "num_groups": "2",
            # Long enough that the launch is still up when the active test has seen an update;
            # launch_testing then stops it and the learner writes its final files.
            "iterations": str(ITERATIONS),
            "steps_per_iteration": "128",
            "run_dir": str(run_dir),
        }.items(),
    )
    # Own DDS domain, localhost only; scoped, so this process's environment is restored.
    stack = GroupAction(
        scoped=True,
        actions=[
            SetEnvironmentVariable("ROS_DOMAIN_ID", str(unique_domain_id())),
            SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
            train_sim,
        ],
    )
    return (
        LaunchDescription([stack, launch_testing.actions.ReadyToTest()]),
        {"run_dir": run_dir},
    )


class TestTrainSimRuns(unittest.TestCase):
    def test_learner_updates_with_two_workers(self, proc_output: object) -> None:
        # Both workers reported in, and the learner finished an update on their batches.
        proc_output.assertWaitFor(  # type: ignore[attr-defined]
            "worker rollout_worker_1: policies [1]", timeout=UPDATE_TIMEOUT_S
        )
        proc_output.assertWaitFor(  # type: ignore[attr-defined]
            f"iteration 1/{ITERATIONS}", timeout=UPDATE_TIMEOUT_S
        )


@launch_testing.post_shutdown_test()
class TestTrainSimShutdown(unittest.TestCase):
    @classmethod
    def tearDownClass(cls) -> None:
        while _SCRATCH:
            _SCRATCH.pop().cleanup()

    def test_every_node_exits_cleanly(self, proc_info: object) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)  # type: ignore[arg-type]

    def test_learner_wrote_its_final_files(self, run_dir: Path) -> None:
        # Stopped by launch_testing (SIGINT): the learner still writes checkpoint + summary.
        self.assertEqual(missing_final_files(run_dir, NUM_POLICIES), [])
