"""The `sim_bridge` node: the MuJoCo arm exposed as a ros2_control driver exposes a real arm.

Topics (same names and types as joint_state_broadcaster + forward_command_controller, so the
policy server cannot tell the simulator from the robot):
    publishes   joint_states                    sensor_msgs/JointState
    subscribes  /<controller_name>/commands     std_msgs/Float64MultiArray (joint positions)
    publishes   ~/status                        std_msgs/String (JSON counters, low rate)
    service     ~/reset                         std_srvs/Trigger (back to the home pose)

Modes (parameter `mode`):
    realtime  a timer steps the physics so that sim time follows wall time; stamps = wall time.
    lockstep  each command advances exactly one control period, then the new state is published
              at once (stamp = sim time): deterministic and as fast as the consumer.
"""

from __future__ import annotations

import json
import math
import time
from enum import StrEnum
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from cgrpo_ros.bounded import shown
from cgrpo_ros.nodes.params import (
    ParameterError,
    ParamSpec,
    declare_parameters,
    node_main,
)
from cgrpo_ros.robot.config import (
    RobotConfig,
    default_robot_config_path,
    load_robot_config,
)
from sim_bridge.arm_sim import ArmSim

NODE_NAME = "sim_bridge"
PUBLISH_RATE_RANGE_HZ = (1.0, 1000.0)
STATUS_PERIOD_S = 0.5
# Realtime mode never simulates more than this per tick: after a stall (debugger, overloaded
# machine) the sim slows down instead of running a burst of physics.
MAX_CATCH_UP_S = 0.1
# A client sending garbage at 50 Hz must not flood the log.
WARN_THROTTLE_S = 2.0


class Mode(StrEnum):
    REALTIME = "realtime"
    LOCKSTEP = "lockstep"


def _default_robot_config() -> str:
    try:
        return str(default_robot_config_path())
    except FileNotFoundError:
        return ""  # refused in _load_robot with the paths that were tried


SIM_BRIDGE_PARAMS = (
    ParamSpec("robot_config", _default_robot_config(), "Robot YAML (joints, limits, home, rates)."),
    ParamSpec(
        "mode",
        Mode.REALTIME.value,
        "realtime: sim time follows wall time; lockstep: one control period of physics per "
        "received command.",
        choices=tuple(m.value for m in Mode),
    ),
    ParamSpec(
        "publish_rate_hz",
        100.0,
        "joint_states rate [Hz] (realtime: also the physics tick).",
        PUBLISH_RATE_RANGE_HZ,
    ),
    ParamSpec("model_path", "", "MJCF file; empty = the shipped cgrpo_ros/robot/assets/arm7.xml."),
)
DECLARED_PARAMETERS = tuple(spec.name for spec in SIM_BRIDGE_PARAMS)


def _to_time_msg(t: float) -> Time:
    sec = math.floor(t)
    return Time(sec=int(sec), nanosec=min(round((t - sec) * 1e9), 999_999_999))


class SimBridgeNode(Node):
    """Simulated 7-joint arm behind joint_states and a forward position controller."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._declare_parameters()
        self.robot = self._load_robot()
        self.sim = ArmSim(self.robot, self.model_path or None)
        substeps = self.robot.control_period_s / self.sim.timestep
        self.substeps_per_command = max(1, round(substeps))
        self.commands_received = 0
        self.commands_rejected = 0
        self.resets = 0
        self._sim_debt_s = 0.0
        self._last_tick = time.monotonic()

        self.joint_state_pub = self.create_publisher(JointState, "joint_states", 10)
        self.status_pub = self.create_publisher(String, "~/status", 10)
        self.command_sub = self.create_subscription(
            Float64MultiArray, self.robot.command_topic, self.on_command, 10
        )
        self.reset_srv = self.create_service(Trigger, "~/reset", self.on_reset_request)
        # In lockstep the timer only re-publishes the latest state (same stamp) so that late
        # subscribers see the arm before their first command; it never steps the physics.
        self.publish_timer = self.create_timer(1.0 / self.publish_rate_hz, self.on_publish_tick)
        self.status_timer = self.create_timer(STATUS_PERIOD_S, self.on_status_tick)
        self.get_logger().info(
            f"{self.robot.name}: {self.robot.num_joints} joints, mode={self.mode.value}, "
            f"commands on {self.robot.command_topic}, joint_states at {self.publish_rate_hz} Hz"
        )
        self.publish_joint_state()

    # -- parameters ---------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        values = declare_parameters(self, SIM_BRIDGE_PARAMS)
        self.mode = Mode(values["mode"])  # declare_parameters checked the choices
        self.publish_rate_hz = float(values["publish_rate_hz"])
        self.robot_config_path = str(values["robot_config"])
        self.model_path = str(values["model_path"])

    def _load_robot(self) -> RobotConfig:
        if not self.robot_config_path:
            raise ParameterError(
                "parameter 'robot_config' is empty and no shipped arm7.yaml was found; "
                "pass -p robot_config:=/path/to/arm7.yaml"
            )
        try:
            return load_robot_config(self.robot_config_path)
        except (OSError, ValueError) as err:
            raise ParameterError(
                f"parameter 'robot_config' = {self.robot_config_path!r}: {err}"
            ) from None

    # -- callbacks ----------------------------------------------------------------------------
    def on_command(self, msg: Float64MultiArray) -> None:
        """Apply a joint position command (and, in lockstep, simulate one control period)."""
        self.commands_received += 1
        values = np.asarray(msg.data, dtype=np.float64)
        n = self.robot.num_joints
        if values.shape != (n,) or not np.all(np.isfinite(values)):
            self.commands_rejected += 1
            self.get_logger().warning(
                f"rejected command on {self.robot.command_topic}: {values.size} values "
                f"{shown(values)}; expected {n} finite joint positions "
                f"[rad] in the order {list(self.robot.joint_names)} "
                f"({self.commands_rejected} rejected so far)",
                throttle_duration_sec=WARN_THROTTLE_S,
            )
            return
        self.sim.set_position_command(values)
        if self.mode is Mode.LOCKSTEP:
            self.sim.step(self.substeps_per_command)
            self.publish_joint_state()

    def on_reset_request(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        self.sim.reset()
        self.resets += 1
        self._sim_debt_s = 0.0
        self.publish_joint_state()
        response.success = True
        response.message = f"reset to home pose {list(self.robot.home)} at t={self.sim.time:.3f}s"
        self.get_logger().info(response.message)
        return response

    def on_publish_tick(self) -> None:
        if self.mode is Mode.REALTIME:
            now = time.monotonic()
            self._sim_debt_s += min(now - self._last_tick, MAX_CATCH_UP_S)
            self._last_tick = now
            n = int(self._sim_debt_s / self.sim.timestep)
            self.sim.step(n)
            self._sim_debt_s -= n * self.sim.timestep
        self.publish_joint_state()

    def on_status_tick(self) -> None:
        status = {
            "mode": self.mode.value,
            "sim_time": round(self.sim.time, 6),
            "commands_received": self.commands_received,
            "commands_rejected": self.commands_rejected,
            "resets": self.resets,
        }
        self.status_pub.publish(String(data=json.dumps(status)))

    def publish_joint_state(self) -> None:
        msg = JointState()
        if self.mode is Mode.LOCKSTEP:
            msg.header.stamp = _to_time_msg(self.sim.time)
        else:
            msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(self.robot.joint_names)
        msg.position = self.sim.joint_positions().tolist()
        msg.velocity = self.sim.joint_velocities().tolist()
        msg.effort = self.sim.joint_efforts().tolist()
        self.joint_state_pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    node_main(NODE_NAME, __doc__, SIM_BRIDGE_PARAMS, args, make_node=lambda _stop: SimBridgeNode())


if __name__ == "__main__":
    main()
