"""What the policy server's tests share: the robot and tasks they serve, constant-output models,
a probe playing the robot driver's side of the graph, and a live model switch (~/reload's
path). Imported by test_policy_server*.py (test/ is on sys.path through test/conftest.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState

from cgrpo_ros.robot.config import load_robot_config
from cgrpo_ros.robot.reach_task import ReachTask
from cgrpo_ros.tasks import TaskSpec
from cgrpo_ros.testing.policies import (
    joint_position_robot,
    reach_task_spec,
    write_constant_policy,
)
from cgrpo_ros.testing.ros_processes import (
    call_service,
    wait_for,
)

ROBOT = load_robot_config()

# Most models here command joint positions (the server's safety behaviour is about joints);
# one commands fingertip steps, the arm7 config's reach.action.
TASK = ReachTask(joint_position_robot(ROBOT))


FINGERTIP_TASK = ReachTask(ROBOT)


JOINT_TASK_SPEC = reach_task_spec(joint_position_robot(ROBOT))


FINGERTIP_TASK_SPEC = reach_task_spec(ROBOT)


DT = ROBOT.control_period_s


STARTUP_TIMEOUT_S = 40.0  # python + onnxruntime + torch import + discovery, loaded machine


STEP_TIMEOUT_S = 8.0


SERVER = "cgrpo_ros.nodes.policy_server"


def write_constant_model(
    path: Path, output: list[float], task: TaskSpec = JOINT_TASK_SPEC, **changes: Any
) -> Path:
    """An ONNX policy whose action_mean is `output` whatever the observation: a valid model
    for `task` (cgrpo_ros/testing/policies.py), with `changes` to its spec (names, bounds)
    applied."""
    spec = dataclasses.replace(task, **changes) if changes else task
    return write_constant_policy(path, output, spec, policy_version=3)


@dataclass
class Probe:
    """The driver's side of the graph."""

    node: Node
    executor: SingleThreadedExecutor
    commands: list[tuple[float, list[float]]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    state: JointState | None = None  # published at 100 Hz while set

    def spin(self, timeout: float) -> None:
        self.executor.spin_once(timeout_sec=timeout)

    def status(self) -> dict[str, Any]:
        return self.statuses[-1] if self.statuses else {}

    def call(self, srv_type: Any, name: str, request: Any) -> Any:
        return call_service(
            self.node, self.spin, srv_type, name, request, STARTUP_TIMEOUT_S, STEP_TIMEOUT_S
        )

    def run_for(self, seconds: float) -> None:
        wait_for(lambda: False, seconds, self.spin, period=0.005)


def set_model_path(probe: Probe, path: Path) -> None:
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(path))
    request = SetParameters.Request(parameters=[ParameterMsg(name="model_path", value=value)])
    reply = probe.call(SetParameters, "/policy_server/set_parameters", request)
    assert reply.results[0].successful, reply.results[0].reason
