"""The `policy_server` node: a trained ONNX policy driving an arm at a fixed control rate.

Control modes (issue 15): `event` (default) ticks when a new /joint_states message arrives,
capped at `control_rate_hz` (cgrpo_ros/deploy/tick_trigger.py), with a fallback timer for
the watchdog and holds while the robot is silent; `timer` ticks on a timer at the rate and
uses the newest joint state. Both run the same tick, so every safety behaviour is shared.

Topics and services (docs/deploy.md):
    subscribes  /joint_states                     sensor_msgs/JointState (by joint name)
    subscribes  ~/goal                            std_msgs/Float64MultiArray (goal/<i> inputs)
    publishes   /<controller_name>/commands       std_msgs/Float64MultiArray (joint positions)
    publishes   <trajectory_topic> (optional)     trajectory_msgs/JointTrajectory; header.stamp
                                                  = stamp of the joint state it was computed from
    publishes   ~/status                          std_msgs/String (JSON, see docs/deploy.md)
    services    ~/enable (SetBool), ~/estop, ~/reset_estop, ~/reload (Trigger)

The maths is in cgrpo_ros/deploy: observation.py (by-name observations, validation),
command_gate.py (modes, holds, blend-in, rate limiting), policy_runtime.py (load + validate).
"""

from __future__ import annotations

import array
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from cgrpo_ros.bounded import bounded_text, shown, strict_json
from cgrpo_ros.core.policy_artifact import PolicyArtifactError
from cgrpo_ros.core.signing import KeyFileError, TrustedKeys
from cgrpo_ros.deploy.command_gate import CommandGate, HoldReason, Mode
from cgrpo_ros.deploy.joint_states import JointStateError, MergedJointStates
from cgrpo_ros.deploy.observation import NonFiniteObservationError, ObservationError
from cgrpo_ros.deploy.policy_runtime import (
    PolicyRuntime,
    WindowStats,
    load_policy_runtime,
    timed_action,
)
from cgrpo_ros.deploy.realtime import MAX_PRIORITY, RealtimeError, apply_realtime
from cgrpo_ros.deploy.tick_trigger import FALLBACK_PERIODS, TickTrigger
from cgrpo_ros.nodes.params import (
    BackgroundSpinner,
    ParameterError,
    ParamSpec,
    declare_parameters,
    node_main,
)
from cgrpo_ros.robot.config import RobotConfig, default_robot_config_path, load_robot_config

NODE_NAME = "policy_server"
WARN_THROTTLE_S = 2.0


def _default_robot_config() -> str:
    try:
        return str(default_robot_config_path())
    except FileNotFoundError:
        return ""  # refused at start with the paths that were tried


class ControlMode(StrEnum):
    EVENT = "event"  # tick when a joint state arrives, at most control_rate_hz
    TIMER = "timer"  # tick on a timer at control_rate_hz


class ExecutorKind(StrEnum):
    EVENTS = "events"  # rclpy.experimental.EventsExecutor (C++ event queue)
    SINGLE_THREADED = "single_threaded"  # rclpy.executors.SingleThreadedExecutor


# Declared once, here (ParamSpec, as every node); test/unit/test_deploy_launch_static.py checks
# config/deploy.yaml and deploy.launch.py against this tuple.
POLICY_SERVER_PARAMS = (
    ParamSpec("model_path", "", "ONNX policy file; ~/reload re-reads this path.", read_only=False),
    ParamSpec("robot_config", _default_robot_config(), "Robot YAML."),
    ParamSpec("control_rate_hz", 0.0, "Control rate [Hz]; 0 = the robot config's.", (0.0, 2000.0)),
    ParamSpec("controller_name", "", "Commands on /<name>/commands; '' = robot config's."),
    ParamSpec(
        "blend_time_s", 2.0, "Blend from the current pose to the policy [s].", (0.0, 60.0),
        read_only=False,
    ),
    ParamSpec("observation_timeout_s", 0.1, "Hold when joint_states is older [s].", (0.001, 10.0)),
    ParamSpec(
        "goal", Parameter.Type.DOUBLE_ARRAY, "Goal inputs goal/<i> (also ~/goal).", read_only=False
    ),
    ParamSpec("publish_trajectory", False, "Also publish trajectory_msgs/JointTrajectory."),
    ParamSpec("trajectory_topic", "/joint_trajectory_controller/joint_trajectory", ""),
    ParamSpec("publish_when_disabled", True, "false: silent while disabled."),
    ParamSpec("status_rate_hz", 5.0, "Rate of ~/status [Hz].", (0.1, 100.0)),
    ParamSpec(
        "control_mode", "event", "event: tick on each joint state (capped); timer.",
        choices=tuple(m.value for m in ControlMode),
    ),
    ParamSpec(
        "executor", "events", "events (rclpy EventsExecutor) or single_threaded.",
        choices=tuple(k.value for k in ExecutorKind),
    ),
    # Issue 18: set, only models whose <file>.sig is signed by one of these keys are served.
    ParamSpec("trusted_keys", Parameter.Type.STRING_ARRAY, "Public key files (docs/security.md)."),
    # Issue 15: real-time scheduling of every server thread (deploy/realtime.py).
    ParamSpec(
        "realtime_priority", 0, "SCHED_FIFO priority (1-98) of the server; 0: normal.",
        (0, MAX_PRIORITY),
    ),
    ParamSpec("cpu_affinity", Parameter.Type.INTEGER_ARRAY, "CPUs the server runs on; unset: any."),
)  # fmt: skip
DECLARED_PARAMETERS = tuple(spec.name for spec in POLICY_SERVER_PARAMS)
# A control period longer than this many periods counts its missing ticks as missed.
MISSED_TICK_PERIODS = 1.5
# Largest serialized message taken from /joint_states and ~/goal [bytes] (issue 19). Both
# subscriptions take the raw CDR bytes, so a larger message is refused by its length before
# any Python object is built from it: a 100,000-joint frame or 1 MB names cost the control
# loop one length check instead of tens of milliseconds. 128 KiB holds ~1000 joints with
# 32-character names (JointState: 4 + name + padding, then 3 x 8 bytes per joint).
MAX_JOINT_STATE_BYTES = 128 * 1024
MAX_GOAL_BYTES = 4096  # Float64MultiArray: a few goal values and an (ignored) layout
# publish_when_disabled false: after a silence, continue from the last command when every
# joint is measured within this distance of it [rad] (the arm is where the server left it,
# up to tracking error); otherwise something else moved the arm and the server restarts at
# rest from the measured pose (CommandGate.resume, docs/deploy.md).
RESUME_TOLERANCE_RAD = 0.02


class PolicyServerNode(Node):
    """Serves one ONNX policy: observations by joint name in, limited joint commands out."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = self._declare_parameters()
        self.robot = self._load_robot(str(p["robot_config"]))
        try:
            self.trusted = TrustedKeys.load(p["trusted_keys"] or [])
        except KeyFileError as err:
            raise ParameterError(f"parameter 'trusted_keys': {err}") from None
        try:
            self.runtime: PolicyRuntime = load_policy_runtime(
                str(p["model_path"]), self.robot, self.trusted
            )
        except PolicyArtifactError as err:
            raise ParameterError(str(err)) from None
        if self.trusted:
            self.get_logger().info(
                f"serving only policies signed by {self.trusted.describe()}; "
                f"{self.runtime.path} is signed by key {self.runtime.signed_by}"
            )
        else:
            self.get_logger().warning(
                "running UNSIGNED policies: no trusted_keys, so any file at model_path is "
                "served (docs/security.md)"
            )
        self.goal: np.ndarray | None = None
        if p["goal"] is not None:
            self.goal = self._checked_goal(list(p["goal"]), self.runtime)
        rate = float(p["control_rate_hz"]) or self.robot.control_rate_hz
        self.dt = 1.0 / rate
        self.timeout_s = float(p["observation_timeout_s"])
        self.publish_when_disabled = bool(p["publish_when_disabled"])
        self.control_mode = ControlMode(p["control_mode"])
        self.executor_kind = ExecutorKind(p["executor"])
        self.gate = CommandGate(
            lower=self.robot.lower,
            upper=self.robot.upper,
            velocity_limit=self.robot.velocity_limit,
            acceleration_limit=self.robot.acceleration_limit,
            dt=self.dt,
            blend_time_s=float(p["blend_time_s"]),
        )
        # Every config joint by name, from whichever /joint_states message named it last,
        # with its own arrival time for the watchdog (several publishers: arm, gripper).
        self.joints = MergedJointStates(self.robot.joint_names)
        self.faults: dict[str, int] = {
            "joint_states_rejected": 0,
            "goals_rejected": 0,
            "reloads_refused": 0,
        }
        # publish_when_disabled false: True once a hold has braked to rest (nothing is sent
        # until ~/enable); the controller keeps that last command, at rest.
        self.silent = False
        self.reloads = 0
        self.commands_published = 0
        self.last_error = ""
        self.periods, self.jitter = WindowStats(), WindowStats()
        self.inference, self.compute = WindowStats(), WindowStats()
        # Where a tick's time goes (docs/benchmarks.md): the joint state's age when the tick
        # starts (its header stamp against the wall clock: DDS delivery + executor wake-up,
        # plus the wait for the timer in timer mode), then each step of the tick.
        self.stages = {
            name: WindowStats()
            for name in ("stamp_to_tick", "observation", "inference", "limiter", "publish")
        }
        self.missed_ticks = 0
        self.fallback_ticks = 0
        self._last_tick: float | None = None
        self.trigger = TickTrigger(self.dt)

        controller = str(p["controller_name"]) or self.robot.controller_name
        self.command_topic = f"/{controller}/commands"
        self.command_pub = self.create_publisher(Float64MultiArray, self.command_topic, 10)
        # One message of each kind, filled in place every tick (no allocation in the tick).
        self._command_msg, self._command_data = _command_message(self.robot.num_joints)
        self.trajectory_pub = None
        if p["publish_trajectory"]:
            topic = str(p["trajectory_topic"])
            self.trajectory_pub = self.create_publisher(JointTrajectory, topic, 10)
            self._trajectory_msg, self._trajectory_positions = _trajectory_message(
                self.robot.joint_names, self.dt
            )
        self.status_pub = self.create_publisher(String, "~/status", 10)
        # Depth 1: after any delay only the newest joint state is taken; an older one queued
        # behind it would be a tick computed from the past. Raw: the message's length is
        # checked before it is deserialised (MAX_JOINT_STATE_BYTES).
        self.create_subscription(JointState, "/joint_states", self.on_joint_state, 1, raw=True)
        self.create_subscription(Float64MultiArray, "~/goal", self.on_goal, 10, raw=True)
        self.create_service(SetBool, "~/enable", self.on_enable_request)
        self.create_service(Trigger, "~/estop", self.on_estop_request)
        self.create_service(Trigger, "~/reset_estop", self.on_reset_estop_request)
        # ~/reload on a node of its own, spun by its own thread (issue 19): loading and
        # validating a model takes ~10 ms, during which the control loop keeps ticking. Same
        # service name (the main node's ~/reload). rclpy's MultiThreadedExecutor would do this
        # with callback groups but busy-waits a core (node_main's note); this thread sleeps
        # in rcl_wait until a request comes.
        # (Not the command line's arguments: its `-r __node:=...` would rename this node too.)
        self.reload_node = Node(
            f"{self.get_name()}_reload",
            namespace=self.get_namespace(),
            context=self.context,
            use_global_arguments=False,
            start_parameter_services=False,
        )
        self.reload_srv = self.reload_node.create_service(
            Trigger, f"{self.get_fully_qualified_name()}/reload", self.on_reload_request
        )
        self.reload_spinner = BackgroundSpinner(self.reload_node)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        if self.control_mode is ControlMode.TIMER:
            self.control_timer = self.create_timer(self.dt, self.on_control_tick)
        else:  # restarted by every tick: fires only when no joint state came for a while
            fallback_s = FALLBACK_PERIODS * self.dt
            self.control_timer = self.create_timer(fallback_s, self.on_fallback_tick)
        self.status_timer = self.create_timer(1.0 / float(p["status_rate_hz"]), self.publish_status)
        # Last, once every thread of the node exists (the executor's, started after, inherit).
        self.scheduling = self._apply_scheduling(int(p["realtime_priority"]), p["cpu_affinity"])
        self.get_logger().info(
            f"serving {self.runtime.path} (policy {self.runtime.policy.metadata.policy_id} "
            f"v{self.runtime.policy.metadata.policy_version}) at {rate} Hz "
            f"({self.control_mode.value} mode, {self.executor_kind.value} executor) on "
            f"{self.command_topic}; {self.scheduling}; DISABLED until ~/enable, holding the "
            "first joint state"
        )

    # -- parameters and start-up ---------------------------------------------------------------
    def _declare_parameters(self) -> dict[str, Any]:
        return declare_parameters(self, POLICY_SERVER_PARAMS)

    @staticmethod
    def _apply_scheduling(priority: int, cpus: Any) -> str:
        try:
            return apply_realtime(priority, [int(c) for c in (cpus or [])])
        except RealtimeError as err:
            names = "realtime_priority" if priority else "cpu_affinity"
            raise ParameterError(f"parameter '{names}': {err}") from None

    def _load_robot(self, path: str) -> RobotConfig:
        try:
            return load_robot_config(path or None)
        except (OSError, ValueError) as err:
            raise ParameterError(f"parameter 'robot_config': {err}") from None

    @staticmethod
    def _checked_goal(goal: list[float], runtime: PolicyRuntime) -> np.ndarray:
        try:
            return runtime.builder.check_goal(goal)
        except ObservationError as err:
            raise ParameterError(f"parameter 'goal': {err}") from None

    def on_set_parameters(self, params: list[Parameter[Any]]) -> SetParametersResult:
        for param in params:
            if param.name == "goal" and param.value is not None:
                try:
                    self.goal = self.runtime.builder.check_goal(list(param.value))
                except ObservationError as err:
                    self._refuse_goal(f"parameter 'goal' refused: {err}")
                    return SetParametersResult(successful=False, reason=self.last_error)
            if param.name == "blend_time_s":
                self.gate.blend_time_s = float(param.value)
        return SetParametersResult(successful=True)

    # -- inputs --------------------------------------------------------------------------------
    def on_joint_state(self, data: bytes) -> None:
        """Merge one /joint_states message by name; in event mode, tick if it named a config
        joint (a gripper-only message does not)."""
        now = time.monotonic()
        if len(data) > MAX_JOINT_STATE_BYTES:
            self._reject_joint_state(
                f"joint_states message of {len(data)} bytes refused unread; allowed: at most "
                f"{MAX_JOINT_STATE_BYTES} bytes"
            )
            return
        try:
            msg = deserialize_message(data, JointState)
        except Exception as err:  # whatever the C conversion raises
            self._reject_joint_state(f"joint_states message not readable: {shown(str(err))}")
            return
        stamp = msg.header.stamp
        try:
            named = self.joints.update(
                msg.name, msg.position, msg.velocity, stamp.sec * 1_000_000_000 + stamp.nanosec, now
            )
        except JointStateError as err:
            self._reject_joint_state(str(err))
            return
        if not named:
            return  # another device's joints only (a gripper): not ours
        if not self.gate.started:
            self._start()
        elif self.control_mode is ControlMode.EVENT and self.trigger.on_joint_state(now):
            self.control_timer.reset()  # the fallback waits for silence again
            self._tick(now)

    def _measured_pose(self) -> tuple[np.ndarray | None, str]:
        """Every config joint's position, finite, or None and why not."""
        missing = self.joints.missing()
        if missing:
            return None, f"waiting for joint_states of joint(s) {missing} (the pose is incomplete)"
        pose = self.joints.positions.copy()
        if not np.isfinite(pose).all():
            return None, f"joint_states positions are not finite: {pose.tolist()}"
        return pose, ""

    def _start(self) -> None:
        """Hold the measured pose once every config joint is known and finite."""
        pose, why = self._measured_pose()
        if pose is None:
            self.last_error = why
            self.get_logger().warning(why, throttle_duration_sec=WARN_THROTTLE_S)
            return
        self.gate.start(pose)
        self.silent = not self.publish_when_disabled  # at rest: nothing to brake
        self.get_logger().info(f"holding the current pose {np.round(pose, 4).tolist()}")

    def _reject_joint_state(self, why: str) -> None:
        self.faults["joint_states_rejected"] += 1
        self._warn(why)

    def _refuse_goal(self, why: str) -> None:
        self.faults["goals_rejected"] += 1
        self._warn(why)

    def on_goal(self, data: bytes) -> None:
        if len(data) > MAX_GOAL_BYTES:
            self._refuse_goal(
                f"~/goal message of {len(data)} bytes refused unread; allowed: at most "
                f"{MAX_GOAL_BYTES} bytes"
            )
            return
        try:
            msg = deserialize_message(data, Float64MultiArray)
            self.goal = self.runtime.builder.check_goal(msg.data)
        except ObservationError as err:
            self._refuse_goal(f"~/goal refused: {err}")
        except Exception as err:  # whatever the C conversion raises
            self._refuse_goal(f"~/goal message not readable: {shown(str(err))}")

    # -- the control loop ----------------------------------------------------------------------
    def on_control_tick(self) -> None:
        """Timer mode: every period."""
        self._tick(time.monotonic())

    def on_fallback_tick(self) -> None:
        """Event mode: no joint state for FALLBACK_PERIODS periods (watchdog, holds)."""
        now = time.monotonic()
        self.trigger.on_fallback(now)
        self.fallback_ticks += 1
        self._tick(now)

    def _tick(self, start: float) -> None:
        """One control tick: observation, policy, command gate, publish. No logging, no
        JSON, no allocation beyond numpy's small arrays on the normal path."""
        last = self._last_tick
        if last is not None:
            period = start - last
            self.periods.add(period)
            self.jitter.add(abs(period - self.dt))
            if period > MISSED_TICK_PERIODS * self.dt:
                self.missed_ticks += round(period / self.dt) - 1
        self._last_tick = start
        runtime = self.runtime  # one read: a reload lands between ticks
        if not self.gate.started:
            return  # nothing is ever published before a first valid joint state
        if self.silent:
            return  # publish_when_disabled false, and the hold has come to rest
        stamp_ns = self.joints.stamp_ns
        self.stages["stamp_to_tick"].add((time.time_ns() - stamp_ns) * 1e-9)
        action, reason = None, None
        if self.gate.mode is Mode.ENABLED:
            action, reason = self._policy_action(runtime, start)
        limiter_start = time.monotonic()
        command = self.gate.tick(action, reason)
        publish_start = time.monotonic()
        self.stages["limiter"].add(publish_start - limiter_start)
        self._command_data[:] = command
        self.command_pub.publish(self._command_msg)
        if self.trajectory_pub is not None:
            self._publish_trajectory(command, stamp_ns)
        self.commands_published += 1
        if not self.publish_when_disabled and self.gate.mode is Mode.DISABLED:
            # Silent once braked to rest: the controller keeps this last command, and a
            # command at rest is all it may keep (issue 19: going silent at speed left the
            # controller to stop the arm at 7x the acceleration limit).
            self.silent = self.gate.at_rest
        end = time.monotonic()
        self.stages["publish"].add(end - publish_start)
        self.compute.add(end - start)

    def _policy_action(
        self, runtime: PolicyRuntime, now: float
    ) -> tuple[np.ndarray | None, HoldReason | None]:
        joints = self.joints
        if joints.oldest_age(now) > self.timeout_s:  # any config joint not heard recently
            return None, HoldReason.STALE_OBSERVATION
        if runtime.builder.needs_velocity and not joints.has_velocity.all():
            self._warn(
                f"no joint velocity for {joints.without_velocity()} (their last joint_states "
                "had an empty velocity array) and the policy observes velocities; holding"
            )
            return None, HoldReason.BAD_OBSERVATION
        build_start = time.monotonic()
        try:
            obs = runtime.builder.build(
                joints.joint_names, joints.positions, joints.velocities, self.goal
            )
        except NonFiniteObservationError as err:
            self._warn(str(err))
            return None, HoldReason.NONFINITE_OBSERVATION
        except ObservationError as err:
            self._warn(str(err))
            return None, HoldReason.BAD_OBSERVATION
        self.stages["observation"].add(time.monotonic() - build_start)
        action, seconds = timed_action(runtime, obs)
        self.inference.add(seconds)
        self.stages["inference"].add(seconds)
        if not np.isfinite(action).all():
            self._warn(f"policy output {action.tolist()} is not finite; holding")
            return None, HoldReason.NONFINITE_ACTION
        assert self.gate.last_command is not None  # the gate started before any action
        return runtime.joint_target(action, self.gate.last_command), None

    def _warn(self, why: str) -> None:
        """Keep and log a problem; its text is bounded (it may quote untrusted input)."""
        self.last_error = bounded_text(why)
        self.get_logger().warning(self.last_error, throttle_duration_sec=WARN_THROTTLE_S)

    def destroy_node(self) -> None:
        """The reload thread and node go first, then the node itself (node_main's order)."""
        self.reload_spinner.stop()
        self.reload_node.destroy_node()
        super().destroy_node()

    def _publish_trajectory(self, command: np.ndarray, stamp_ns: int) -> None:
        msg = self._trajectory_msg
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        self._trajectory_positions[:] = command
        self.trajectory_pub.publish(msg)  # type: ignore[union-attr]  # only called when set

    # -- services ------------------------------------------------------------------------------
    def on_enable_request(
        self, request: SetBool.Request, response: SetBool.Response
    ) -> SetBool.Response:
        try:
            if not request.data:
                response.message = self.gate.disable()
            else:
                response.message = self._resume_after_silence() + self.gate.enable()
                self.silent = False
            response.success = True
        except RuntimeError as err:
            response.success, response.message = False, f"refused: {err}"
        self.get_logger().info(f"~/enable {request.data}: {response.message}")
        return response

    def _resume_after_silence(self) -> str:
        """publish_when_disabled false, silent: take the controller back without a step."""
        if not self.silent or self.gate.mode is not Mode.DISABLED:
            return ""
        pose, why = self._measured_pose()
        if pose is None:
            raise RuntimeError(f"no valid joint state to start from: {why}")
        if self.gate.resume(pose, RESUME_TOLERANCE_RAD):
            return (
                f"the arm was moved while silent (more than {RESUME_TOLERANCE_RAD} rad from the "
                "last command): restarted at rest from the measured pose; "
            )
        return "continuing from the last command (the arm is where it was left); "

    def on_estop_request(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        self.gate.estop()
        response.success = True
        response.message = "emergency stop latched: holding; ~/reset_estop to release"
        self.get_logger().warning(response.message)
        return response

    def on_reset_estop_request(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        latched = self.gate.mode is Mode.ESTOP
        response.message = self.gate.reset_estop()
        # Success only when there was an e-stop to reset: a caller must not read "done" from
        # a reset that did nothing (issue 19).
        response.success = latched and self.gate.mode is not Mode.ESTOP
        self.get_logger().info(f"~/reset_estop: {response.message}")
        return response

    def on_reload_request(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        """Validate the new model, then swap it in between two ticks if it is good.

        Runs on the reload node's thread: the control loop keeps ticking with the running
        policy meanwhile, and the next tick after the one assignment below uses the new one.
        """
        path = str(self.get_parameter("model_path").value)
        try:
            runtime = load_policy_runtime(
                path, self.robot, self.trusted, newer_than_ns=self.runtime.signed_at_ns
            )
            if runtime.builder.goal_size != self.runtime.builder.goal_size:
                raise PolicyArtifactError(
                    f"policy model {path} needs {runtime.builder.goal_size} goal values, the "
                    f"running one {self.runtime.builder.goal_size}; restart the server instead"
                )
        except PolicyArtifactError as err:
            self.faults["reloads_refused"] += 1
            self.last_error = bounded_text(str(err))
            response.success, response.message = (
                False,
                f"reload refused, still serving {self.runtime.path}: {err}",
            )
            self.get_logger().error(response.message)
            return response
        self.runtime = runtime  # one reference assignment: the next tick sees the new policy
        self.reloads += 1
        response.success = True
        response.message = (
            f"serving {path} (policy version {runtime.policy.metadata.policy_version})"
        )
        self.get_logger().info(response.message)
        return response

    # -- status --------------------------------------------------------------------------------
    def publish_status(self) -> None:
        now = time.monotonic()
        age = self.joints.oldest_age(now)  # inf until every config joint was heard
        status = {
            "mode": self.gate.mode.value,
            "enabled": self.gate.mode is Mode.ENABLED,
            "estop": self.gate.mode is Mode.ESTOP,
            "blending": self.gate.blending,
            "started": self.gate.started,
            "stale": age > self.timeout_s,
            "stale_joints": self.joints.stale_joints(now, self.timeout_s),
            "observation_age_ms": round(age * 1e3, 3) if np.isfinite(age) else None,
            "silent": self.silent,
            "policy": self.runtime.describe(),
            "goal": None if self.goal is None else [float(x) for x in self.goal],
            "reloads": self.reloads,
            "commands_published": self.commands_published,
            "holds": dict(self.gate.holds),
            "faults": dict(self.faults),
            "last_error": self.last_error,
            "limiting": self.gate.limiting_summary(self.robot.joint_names),
            "inference_ms": self.inference.summary(),
            "tick_compute_ms": self.compute.summary(),
            "control_period_ms": self.periods.summary(),
            "control_jitter_ms": self.jitter.summary(),
            "control_rate_hz": round(1.0 / self.dt, 3),
            "control_mode": self.control_mode.value,
            "executor": self.executor_kind.value,
            "scheduling": self.scheduling,
            "missed_ticks": self.missed_ticks,
            "fallback_ticks": self.fallback_ticks,
            "rate_capped_joint_states": self.trigger.refused,
            "tick_stages_ms": {name: w.summary() for name, w in self.stages.items()},
        }
        # Strict JSON whatever a field holds (no Infinity/NaN), every text field bounded.
        self.status_pub.publish(String(data=strict_json(status)))


def _command_message(num_joints: int) -> tuple[Float64MultiArray, np.ndarray]:
    """A command message and a numpy view of its data, written in place each tick."""
    msg = Float64MultiArray(data=array.array("d", [0.0] * num_joints))
    return msg, np.frombuffer(msg.data, dtype=np.float64)


def _trajectory_message(
    joint_names: Sequence[str], dt: float
) -> tuple[JointTrajectory, np.ndarray]:
    """A one-point trajectory (time_from_start = one period) and a view of its positions."""
    msg = JointTrajectory(joint_names=list(joint_names))
    nanosec = round(dt * 1e9)
    point = JointTrajectoryPoint(positions=array.array("d", [0.0] * len(joint_names)))
    point.time_from_start = Duration(sec=nanosec // 1_000_000_000, nanosec=nanosec % 10**9)
    msg.points = [point]
    return msg, np.frombuffer(msg.points[0].positions, dtype=np.float64)


def make_executor(node: Node) -> Executor:
    """The executor the node's `executor` parameter names (measured in docs/benchmarks.md)."""
    if getattr(node, "executor_kind", None) is ExecutorKind.EVENTS:
        from rclpy.experimental.events_executor import EventsExecutor

        return EventsExecutor(context=node.context)
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor(context=node.context)


def main(args: list[str] | None = None) -> None:
    node_main(
        NODE_NAME, __doc__, POLICY_SERVER_PARAMS, args,
        make_node=lambda _stop: PolicyServerNode(), make_executor=make_executor,
    )  # fmt: skip


if __name__ == "__main__":
    main()
