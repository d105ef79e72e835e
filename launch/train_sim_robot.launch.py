"""Train CGRPO through the `ros_robot` backend against the simulated arm (sim_bridge, lockstep).

    ros2 launch cgrpo_ros train_sim_robot.launch.py iterations:=10

One learner, one `rollout_worker` with `backend: ros_robot` running every policy on the
`sim_bridge` node (task cgrpo_ros/Arm7Reach-v0), exactly as it would drive a real arm through
`/joint_states`, `/forward_position_controller/commands` and a reset service. The launch ends
when the learner does; a node exiting with an error fails it (`ros2 launch` exits 1 naming
the node, cgrpo_ros/launch_exits.py).
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cgrpo_ros.core.run_shape import RUN_SHAPE, WORKER_SHAPE_FIELDS

PACKAGE = "cgrpo_ros"
# (name, default, description); "" means "the parameter file's value".
# The run's shape (N, K, iterations, T, seed) from its one declaration, core/run_shape.py.
# The one worker runs all N policies, one after the other; T is best a multiple of the reach
# task's 100-step episodes.
ARGUMENTS = (
    ("params_file", "", "Node parameter YAML (default: config/train_sim_robot.yaml)."),
    *((field.name, "", field.help) for field in RUN_SHAPE),
    ("run_dir", "", "Run directory (default: runs/<task>-<variant>-<time>)."),
    ("config_file", "", "YAML/JSON file of CGRPOConfig overrides for the learner."),
)
SHARED = WORKER_SHAPE_FIELDS  # learner and worker must agree on these
STRINGS = ("run_dir", "config_file")
# SIGINT -> SIGTERM after this long, not launch's 5 s: the learner writes its final files
# after a stop (see train_sim.launch.py).
LEARNER_SIGTERM_TIMEOUT_S = "60"
# A worker stops after the batch it is collecting (its last one); on a loaded 2-core machine
# that, and its DDS teardown, took longer than launch's 5 s once (SIGTERM, exit -15).
WORKER_SIGTERM_TIMEOUT_S = "30"


def _launch_setup(context: LaunchContext) -> list:
    from cgrpo_ros.launch_exits import on_node_exit

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    params_file = arg("params_file") or str(
        Path(get_package_share_directory(PACKAGE)) / "config" / "train_sim_robot.yaml"
    )
    overrides = {
        name: arg(name) if name in STRINGS else int(arg(name))
        for name, _, _ in ARGUMENTS
        if name != "params_file" and arg(name)
    }
    shared = {k: v for k, v in overrides.items() if k in SHARED}
    num_policies = overrides.get("num_policies")
    learner = Node(
        package=PACKAGE,
        executable="learner",
        name="learner",
        namespace="",  # overrides under the node's own name, not "/**" (see train_sim.launch.py)
        output="screen",
        parameters=[params_file, overrides],
        sigterm_timeout=LEARNER_SIGTERM_TIMEOUT_S,
    )
    # policy_ids: every policy (the file's num_policies unless overridden here).
    worker_params: dict = dict(shared)
    if num_policies is not None:
        worker_params["policy_ids"] = list(range(int(num_policies)))
    worker = Node(
        package=PACKAGE,
        executable="rollout_worker",
        name="rollout_worker_0",
        namespace="",
        output="screen",
        parameters=[params_file, worker_params],
        sigterm_timeout=WORKER_SIGTERM_TIMEOUT_S,
    )
    sim = Node(
        package=PACKAGE,
        executable="sim_bridge",
        name="sim_bridge",
        namespace="",
        output="screen",
        parameters=[params_file, {"mode": "lockstep"}],
    )
    on_exit = [
        RegisterEventHandler(
            OnProcessExit(target_action=node, on_exit=on_node_exit(ends_launch=node is learner))
        )
        for node in (sim, learner, worker)
    ]
    return [sim, learner, worker, *on_exit]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])
