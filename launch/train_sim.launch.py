"""Train CGRPO with the ROS 2 node stack: one learner and N rollout workers (gymnasium backend).

    ros2 launch cgrpo_ros train_sim.launch.py env_id:=HalfCheetah-v5 num_workers:=2

Arguments left empty take their value from the parameter file (config/train_sim.yaml by
default). The launch ends when the learner does (it finishes or is stopped through its ~/stop
service); the workers leave on their own when the learner announces it is done. A node that
exits with an error (a refused parameter: 2) stops the launch, and `ros2 launch` exits 1 with
a line naming it (cgrpo_ros/launch_exits.py). `cgrpo train-sim` starts the same executables
with the same parameter file without launch.
"""

from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cgrpo_ros.core.run_shape import RUN_SHAPE, WORKER_SHAPE_FIELDS

PACKAGE = "cgrpo_ros"
# (name, default, description); "" means "the parameter file's value".
ARGUMENTS = (
    ("params_file", "", "Node parameter YAML (default: share/cgrpo_ros/config/train_sim.yaml)."),
    ("env_id", "", "gymnasium task id, e.g. HalfCheetah-v5."),
    ("num_workers", "1", "Rollout worker processes (1 .. num_policies)."),
    # The run's shape (N, K, iterations, T, seed) from its one declaration, core/run_shape.py.
    *((field.name, "", field.help) for field in RUN_SHAPE),
    ("run_dir", "", "Run directory (default: runs/<task>-<variant>-<time>)."),
    ("config_file", "", "YAML/JSON file of CGRPOConfig overrides for the learner."),
)
SHARED = ("env_id", *WORKER_SHAPE_FIELDS)  # learner and workers must agree on these
LEARNER_ONLY = (
    *(f.name for f in RUN_SHAPE if f.name not in WORKER_SHAPE_FIELDS),
    "run_dir",
    "config_file",
)
STRINGS = ("env_id", "run_dir", "config_file")
# On Ctrl-C (or launch_testing's shutdown) launch sends SIGINT, then SIGTERM after
# `sigterm_timeout` (5 s by default). The learner first finishes the update under way, writes
# its checkpoint, ONNX files and summary.json, and lingers for the workers: more than 5 s
# already on HalfCheetah with the default file, and then SIGTERM reached it during interpreter
# teardown (exit code -15); an update over ~10 s would meet SIGKILL before the files.
LEARNER_SIGTERM_TIMEOUT_S = "60"
# A worker stops after the batch it is collecting (its last one); on a loaded 2-core machine
# that, and its DDS teardown, took longer than launch's 5 s once (SIGTERM, exit -15).
WORKER_SIGTERM_TIMEOUT_S = "30"


def _file_value(params_file: str, name: str) -> object:
    """A parameter's value in the file: the learner's section, else the `/**` section."""
    data = yaml.safe_load(Path(params_file).read_text()) or {}
    for section in ("learner", "/learner", "/**"):
        value = data.get(section, {}).get("ros__parameters", {}).get(name)
        if value is not None:
            return value
    raise RuntimeError(f"{params_file} does not set '{name}'; pass {name}:=...")


def _launch_setup(context: LaunchContext) -> list:
    from cgrpo_ros.cli.train_sim import assign_policies
    from cgrpo_ros.launch_exits import on_node_exit

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    params_file = arg("params_file") or str(
        Path(get_package_share_directory(PACKAGE)) / "config" / "train_sim.yaml"
    )
    overrides = {}
    for name, _, _ in ARGUMENTS:
        if name in SHARED + LEARNER_ONLY and arg(name):
            overrides[name] = arg(name) if name in STRINGS else int(arg(name))
    shared = {k: v for k, v in overrides.items() if k in SHARED}
    num_policies = int(overrides.get("num_policies") or _file_value(params_file, "num_policies"))
    learner = Node(
        package=PACKAGE,
        executable="learner",
        name="learner",
        # namespace="" (the root, or a pushed namespace) makes the node name fully specified:
        # only then does launch_ros write the dict below under "/learner" instead of "/**".
        # A "/**" override loses to the file's own `learner:` section (iterations:=2 was
        # ignored); a "/learner" one given after the file wins.
        namespace="",
        output="screen",
        parameters=[params_file, overrides],
        sigterm_timeout=LEARNER_SIGTERM_TIMEOUT_S,
    )
    workers = [
        Node(
            package=PACKAGE,
            executable="rollout_worker",
            name=f"rollout_worker_{w}",
            namespace="",  # overrides under the node's own name (see the learner)
            output="screen",
            parameters=[params_file, {**shared, "policy_ids": ids}],
            sigterm_timeout=WORKER_SIGTERM_TIMEOUT_S,
        )
        for w, ids in enumerate(assign_policies(int(arg("num_workers")), num_policies))
    ]
    # The learner's end is the launch's end; a worker exits 0 when the learner is done, and
    # any node exiting non-zero fails the launch naming it.
    on_exit = [
        RegisterEventHandler(
            OnProcessExit(target_action=node, on_exit=on_node_exit(ends_launch=node is learner))
        )
        for node in (learner, *workers)
    ]
    return [learner, *workers, *on_exit]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])
