"""Deploy a trained ONNX policy: policy_server (and, with use_sim:=true, the MuJoCo sim_bridge).

    ros2 launch cgrpo_ros deploy.launch.py model_path:=/abs/path/best.onnx
    ros2 launch cgrpo_ros deploy.launch.py model_path:=/abs/path/best.onnx use_sim:=true

Parameters come from config/deploy.yaml, then the arguments below override them. The same
file and executables are used by `cgrpo deploy` on machines without `ros2 launch`.
The server starts DISABLED, holding the arm: call /policy_server/enable to run the policy.
When either node exits the launch ends, as `cgrpo deploy` does; a non-zero exit (a refused
model: 2) makes `ros2 launch` exit 1 with a line naming the node (cgrpo_ros/launch_exits.py).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from cgrpo_ros.launch_exits import on_node_exit

PACKAGE = "cgrpo_ros"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    deploy_yaml = os.path.join(share, "config", "deploy.yaml")
    robot_yaml = os.path.join(share, "config", "robots", "arm7.yaml")
    arguments = [
        DeclareLaunchArgument("model_path", description="ONNX policy file (absolute path)"),
        DeclareLaunchArgument(
            "robot_config", default_value=robot_yaml, description="robot YAML (joints, limits)"
        ),
        DeclareLaunchArgument(
            "controller_name",
            default_value="",
            description="commands go to /<controller_name>/commands; '' = the robot config's",
        ),
        DeclareLaunchArgument(
            "control_rate_hz",
            default_value="0.0",
            description="control rate [Hz], a float; 0.0 = the robot config's",
        ),
        DeclareLaunchArgument(
            "use_sim", default_value="false", description="true: also start sim_bridge (MuJoCo)"
        ),
    ]
    # ParameterValue with value_type: launch arguments are strings; without it "50" would be
    # passed as an integer and refused by the double parameter, and "" would become null.
    overrides = {
        "model_path": ParameterValue(LaunchConfiguration("model_path"), value_type=str),
        "robot_config": ParameterValue(LaunchConfiguration("robot_config"), value_type=str),
        "controller_name": ParameterValue(LaunchConfiguration("controller_name"), value_type=str),
        "control_rate_hz": ParameterValue(LaunchConfiguration("control_rate_hz"), value_type=float),
    }
    policy_server = Node(
        package=PACKAGE,
        executable="policy_server",
        name="policy_server",
        # namespace="": the dict is then written under "/policy_server", after the
        # file's `policy_server:` section, so the arguments win. Without it launch_ros
        # writes "/**", which only wins while deploy.yaml has no "/**" section.
        namespace="",
        output="screen",
        parameters=[deploy_yaml, overrides],
    )
    sim_bridge = Node(
        package=PACKAGE,
        executable="sim_bridge",
        name="sim_bridge",
        namespace="",
        output="screen",
        parameters=[
            {
                "mode": "realtime",
                "robot_config": ParameterValue(LaunchConfiguration("robot_config"), value_type=str),
            }
        ],
        condition=IfCondition(LaunchConfiguration("use_sim")),
    )
    on_exit = [
        RegisterEventHandler(
            OnProcessExit(target_action=node, on_exit=on_node_exit(ends_launch=True))
        )
        for node in (sim_bridge, policy_server)
    ]
    return LaunchDescription([*arguments, sim_bridge, policy_server, *on_exit])
