"""launch_testing: the installed deploy.launch.py with use_sim:=true runs the probe policy.

Needs a ROS 2 install (launch_testing, launch_ros) and cgrpo_ros built with colcon; skipped
elsewhere. In a sourced workspace (pytest 8.x: launch_testing's plugin does not load under 9):
    launch_test src/cgrpo_ros/test/launch/test_deploy_launch.py
    colcon test --packages-select cgrpo_ros --pytest-args test/launch
The test takes no launch arguments of its own: it writes the model into a temporary folder
(removed at the end) and passes `model_path:=<it> use_sim:=true` to the launch file, which it
finds in the installed share (ament_index), as `ros2 launch cgrpo_ros deploy.launch.py` does.
The model and the checks are cgrpo_ros/testing/policies.py and
cgrpo_ros/testing/deploy_checks.py, which
test/integration/test_cgrpo_deploy.py runs in CI against `cgrpo deploy --use-sim`.
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
    "test/integration/test_cgrpo_deploy.py runs the same checks against `cgrpo deploy`",
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `launch_test` has no pytest ini
import launch_testing
import launch_testing.actions
import launch_testing.asserts
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import GroupAction, IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource

from cgrpo_ros.robot.config import load_robot_config
from cgrpo_ros.testing.deploy_checks import check_probe_policy_drives_the_arm
from cgrpo_ros.testing.policies import write_probe_policy
from cgrpo_ros.testing.ros_processes import probe_node, unique_domain_id

ROBOT = load_robot_config()
# The stack's own DDS domain, localhost only; the probe below joins it.
DOMAIN_ID = unique_domain_id()
_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []  # removed in TestShutdown.tearDownClass


@pytest.mark.launch_test
def generate_test_description() -> LaunchDescription:
    scratch = tempfile.TemporaryDirectory(prefix="cgrpo_deploy_launch_test_")
    _SCRATCH.append(scratch)
    model = write_probe_policy(Path(scratch.name) / "policy.onnx", ROBOT)
    launch_file = os.path.join(
        get_package_share_directory("cgrpo_ros"), "launch", "deploy.launch.py"
    )
    # scoped: the variables reach the launched nodes, and this process's environment is
    # restored after them (pytest runs other tests in it).
    stack = GroupAction(
        scoped=True,
        actions=[
            SetEnvironmentVariable("ROS_DOMAIN_ID", str(DOMAIN_ID)),
            SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(launch_file),
                launch_arguments={"model_path": str(model), "use_sim": "true"}.items(),
            ),
        ],
    )
    return LaunchDescription([stack, launch_testing.actions.ReadyToTest()])


class TestDeployStack(unittest.TestCase):
    def test_commands_follow_the_policy_after_enable(self) -> None:
        env = {"ROS_DOMAIN_ID": str(DOMAIN_ID)}
        with probe_node(env, "deploy_launch_probe") as (node, executor):
            check_probe_policy_drives_the_arm(
                node, lambda timeout: executor.spin_once(timeout_sec=timeout), ROBOT
            )


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    @classmethod
    def tearDownClass(cls) -> None:
        while _SCRATCH:
            _SCRATCH.pop().cleanup()

    def test_exit_codes(self, proc_info: object) -> None:
        # SIGINT from launch at shutdown: both nodes exit 0 (their main() stops cleanly).
        launch_testing.asserts.assertExitCodes(proc_info)  # type: ignore[arg-type]
