"""Policy artifacts for tests: the one place that makes a valid ONNX model for a robot config.

The metadata comes from the task itself (`TaskSpec.from_env` of `cgrpo_ros/Arm7Reach-v0` on the
given robot, then `TaskSpec.policy_metadata`, as training and `cgrpo export` write it), so a
change of the reach task's observation layout, action size or action mode changes these models
too, and the CI tests that deploy them (test_cgrpo_deploy.py, test_policy_server.py) meet it
before the launch_testing test does (issue 16: test/launch/test_deploy_launch.py built a
7-action model by hand long after the arm had moved to 3-value fingertip steps).

`probe_action` / `follows_probe_action` are the deploy checks' shared expectation: a constant
policy that asks for an unmistakable motion, and the test of a command against it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cgrpo_ros.core.onnx_export import export_policy_onnx
from cgrpo_ros.core.policy import GaussianPolicy
from cgrpo_ros.robot.config import RobotConfig, load_robot_config
from cgrpo_ros.robot.reach_task import ReachTask
from cgrpo_ros.tasks import TaskSpec
from sim_bridge.envs import ENV_ID

# The fingertip probe: full steps along +x. Over the few seconds a test watches, the commanded
# fingertip must have moved this far forward [m] (one step is reach.fingertip_step_m).
PROBE_FINGERTIP_MIN_ADVANCE_M = 0.02
# The joint-position probe: the first joint this far from home [rad], the others at home.
PROBE_JOINT_OFFSET_RAD = 0.1
PROBE_JOINT_TOLERANCE_RAD = 1e-3


def reach_task_spec(robot: RobotConfig | None = None) -> TaskSpec:
    """The reach task's spec on `robot` (default: the shipped arm7.yaml), as training sees it."""
    return TaskSpec.from_env(ENV_ID, robot=robot or load_robot_config())


def joint_position_robot(robot: RobotConfig | None = None) -> RobotConfig:
    """`robot` with the reach task commanding joint positions instead of fingertip steps."""
    robot = robot or load_robot_config()
    return dataclasses.replace(
        robot, reach=dataclasses.replace(robot.reach, action="joint_position")
    )


def write_constant_policy(
    path: Path,
    action_mean: Sequence[float],
    task: TaskSpec | None = None,
    *,
    policy_version: int = 1,
    hidden: tuple[int, ...] = (8,),
) -> Path:
    """An ONNX policy for `task` (default: `reach_task_spec()`) whose action mean is
    `action_mean` whatever it observes. Tests that need a wrong model pass a
    `dataclasses.replace`d spec, so everything they do not change stays valid. `hidden`: the
    layer sizes (large ones make a model that takes long to load)."""
    task = task or reach_task_spec()
    if len(action_mean) != task.act_dim:
        raise ValueError(
            f"action_mean has {len(action_mean)} values; {task.env_id} ({task.action_mode}) "
            f"takes {task.act_dim}: {task.action_names}"
        )
    policy = GaussianPolicy(task.obs_dim, task.act_dim, hidden, 0.0)
    output_layer = policy.mean_net[-1]
    assert isinstance(output_layer, torch.nn.Linear)
    with torch.no_grad():
        output_layer.weight.zero_()
        output_layer.bias.copy_(torch.tensor([float(a) for a in action_mean]))
    path.write_bytes(export_policy_onnx(policy, task.policy_metadata(0, policy_version)))
    return path


def probe_action(robot: RobotConfig) -> list[float]:
    """The constant action of the deploy checks' model for `robot`'s reach task."""
    mode = robot.reach.action
    if mode == "fingertip_delta":
        return [1.0, 0.0, 0.0]  # fingertip forward (+x) at full step
    if mode == "joint_position":
        target = robot.home_array.copy()
        target[0] += PROBE_JOINT_OFFSET_RAD
        return [float(x) for x in np.clip(target, robot.lower, robot.upper)]
    raise ValueError(
        f"reach.action = {mode!r}: add its probe action to cgrpo_ros/testing/policies.py"
    )


def write_probe_policy(path: Path, robot: RobotConfig | None = None) -> Path:
    """The deploy checks' model: `probe_action` on `robot`'s reach task."""
    robot = robot or load_robot_config()
    return write_constant_policy(path, probe_action(robot), reach_task_spec(robot))


def follows_probe_action(
    robot: RobotConfig, home: Sequence[float], command: Sequence[float]
) -> bool:
    """Whether a joint command (the newest one sent) shows the probe policy at work."""
    if robot.reach.action == "fingertip_delta":
        task = ReachTask(robot)
        advance = task.fingertip(np.asarray(command)) - task.fingertip(np.asarray(home))
        return bool(advance[0] > PROBE_FINGERTIP_MIN_ADVANCE_M)
    expected = probe_action(robot)
    return bool(np.max(np.abs(np.asarray(command) - expected)) < PROBE_JOINT_TOLERANCE_RAD)
