"""launch_testing: deploy.launch.py with use_sim:=true brings up the sim-to-sim stack.

Needs a ROS 2 install (launch_testing, launch_ros, a built cgrpo_ros); skipped elsewhere.
Run on a ROS machine: `colcon test --packages-select cgrpo_ros` or
`launch_test test/launch/test_deploy_launch.py model_path:=...` (pytest 8.x, see ENVIRONMENT).
"""

from __future__ import annotations

import os
import unittest

import pytest

pytest.importorskip(
    "launch_testing", reason="launch_testing is not installed (needs a ROS 2 install)"
)
import launch_testing.actions
import launch_testing.asserts
import rclpy
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool

TIMEOUT_S = 30.0
MODEL = os.environ.get("CGRPO_TEST_MODEL", "/tmp/cgrpo_deploy_launch_test.onnx")


def write_model(context: object) -> None:
    """A constant policy holding home + 0.1 rad, written before the nodes start."""
    import torch

    from cgrpo_ros.core.onnx_export import PolicyMetadata, export_policy_onnx
    from cgrpo_ros.core.policy import GaussianPolicy
    from sim_bridge.reach_task import ReachTask
    from sim_bridge.robot_config import load_robot_config

    robot = load_robot_config()
    task = ReachTask(robot)
    policy = GaussianPolicy(task.obs_dim, task.act_dim, (8,), 0.0)
    with torch.no_grad():
        policy.mean_net[-1].weight.zero_()
        policy.mean_net[-1].bias.copy_(torch.tensor(robot.home) + 0.1)
    meta = PolicyMetadata(
        policy_id=0,
        policy_version=1,
        obs_dim=task.obs_dim,
        act_dim=task.act_dim,
        obs_names=task.observation_names(),
        action_names=task.action_names(),
        action_low=[float(x) for x in task.action_low],
        action_high=[float(x) for x in task.action_high],
        task="cgrpo_ros/Arm7Reach-v0",
    )
    with open(MODEL, "wb") as f:
        f.write(export_policy_onnx(policy, meta))


@pytest.mark.launch_test
def generate_test_description() -> LaunchDescription:
    launch_file = os.path.join(
        get_package_share_directory("cgrpo_ros"), "launch", "deploy.launch.py"
    )
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file),
        launch_arguments={"model_path": MODEL, "use_sim": "true"}.items(),
    )
    return LaunchDescription(
        [OpaqueFunction(function=write_model), include, launch_testing.actions.ReadyToTest()]
    )


class TestDeployStack(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()
        cls.node = rclpy.create_node("deploy_launch_probe")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.node.destroy_node()
        rclpy.shutdown()

    def spin_until(self, condition, timeout: float = TIMEOUT_S) -> bool:  # type: ignore[no-untyped-def]
        end = self.node.get_clock().now().nanoseconds + int(timeout * 1e9)
        while self.node.get_clock().now().nanoseconds < end:
            if condition():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return bool(condition())

    def test_commands_follow_the_policy_after_enable(self) -> None:
        states: list[JointState] = []
        commands: list[Float64MultiArray] = []
        subs = [
            self.node.create_subscription(JointState, "/joint_states", states.append, 10),
            self.node.create_subscription(
                Float64MultiArray, "/forward_position_controller/commands", commands.append, 10
            ),
        ]
        client = self.node.create_client(SetBool, "/policy_server/enable")
        try:
            self.assertTrue(self.spin_until(lambda: bool(states)), "no /joint_states")
            self.assertTrue(self.spin_until(lambda: bool(commands)), "no commands (holding)")
            self.assertTrue(client.wait_for_service(timeout_sec=TIMEOUT_S))
            future = client.call_async(SetBool.Request(data=True))
            self.assertTrue(self.spin_until(future.done), "~/enable did not answer")
            self.assertTrue(future.result().success, future.result().message)
            home = list(states[0].position)
            self.assertTrue(
                self.spin_until(
                    lambda: abs(commands[-1].data[0] - (home[0] + 0.1)) < 1e-3, timeout=10.0
                ),
                f"command did not reach the policy target: {list(commands[-1].data)}",
            )
        finally:
            for sub in subs:
                self.node.destroy_subscription(sub)
            self.node.destroy_client(client)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info) -> None:  # type: ignore[no-untyped-def]
        # SIGINT from launch at shutdown: both nodes exit 0 (main() catches the interrupt).
        launch_testing.asserts.assertExitCodes(proc_info)
