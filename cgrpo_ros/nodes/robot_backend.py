"""The rollout worker's `ros_robot` backend: steps come from a robot driver over ROS.

The robot is anything that speaks ros2_control's conventions: `sensor_msgs/JointState` on
`/joint_states`, `std_msgs/Float64MultiArray` joint position commands on
`/<controller>/commands` (forward_command_controller), and a `std_srvs/Trigger` reset service
between episodes. The `sim_bridge` node is one; a real arm with a reset routine is another.
Observation and reward come from `cgrpo_ros.robot.reach_task.ReachTask`, the same code the
in-process `cgrpo_ros/Arm7Reach-v0` env uses, so policies move between the two unchanged.

Every wait runs in the worker's main thread with a timeout and watches the stop flag; the
joint-state callback only copies the state under a lock (rclpy#1313).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.rollout import ActFn
from cgrpo_ros.nodes.params import ParameterError, StopFlag
from cgrpo_ros.robot.config import RobotConfig, load_robot_config
from cgrpo_ros.robot.reach_task import ReachTask

WARN_THROTTLE_S = 5.0
MAX_CACHED_NAME_LISTS = 64  # distinct /joint_states name lists remembered (drivers repeat one)


class _State:
    """The newest joint state, in the robot config's joint order."""

    def __init__(self) -> None:
        self.q: npt.NDArray[np.float64] | None = None
        self.qd: npt.NDArray[np.float64] | None = None
        self.stamp_ns = -1
        self.count = 0  # states received so far (orders states across a reset)


class RobotBackend:
    """Episodes of `reach.episode_steps` control steps on a robot behind ROS topics."""

    def __init__(self, node: Any, stop: StopFlag) -> None:
        p = node.params
        self.node, self.stop = node, stop
        self.log = node.get_logger()
        try:
            self.robot: RobotConfig = load_robot_config(p["robot_config"] or None)
        except (OSError, ValueError) as err:
            raise ParameterError(
                f"parameter 'robot_config' = {p['robot_config']!r}: {err}"
            ) from None
        self.task = ReachTask(self.robot)
        self.rate_hz = p["control_rate_hz"] or self.robot.control_rate_hz
        self.lockstep = bool(p["lockstep"])
        self.state_timeout_s = float(p["state_timeout_s"])
        self.rng = np.random.default_rng([p["seed"], 7, *node.policy_ids])
        self.cond = threading.Condition()
        self.state = _State()
        self._index_cache: dict[tuple[str, ...], list[int] | None] = {}
        self.command_pub = node.create_publisher(Float64MultiArray, self.robot.command_topic, 10)
        self.limiter = self.robot.command_limiter()
        self.last_command = self.robot.home_array.astype(np.float64)
        node.create_subscription(JointState, p["joint_states_topic"], self.on_joint_state, 10)
        self.reset_client = node.create_client(Trigger, p["reset_service"])
        self.reset_service = p["reset_service"]
        self.log.info(
            f"ros_robot: {self.robot.name}, {self.robot.num_joints} joints, commands on "
            f"{self.robot.command_topic} at {self.rate_hz} Hz, lockstep={self.lockstep}, "
            f"reset via {self.reset_service}, {self.robot.reach.episode_steps} steps/episode"
        )

    def on_joint_state(self, msg: JointState) -> None:
        names = tuple(msg.name)
        if names not in self._index_cache:
            if len(self._index_cache) >= MAX_CACHED_NAME_LISTS:
                self._index_cache.clear()  # a flood of invented names must not grow it
            missing = [j for j in self.robot.joint_names if j not in names]
            self._index_cache[names] = (
                None if missing else [names.index(j) for j in self.robot.joint_names]
            )
            if missing:
                self.log.error(f"joint_states lacks joints {missing} of the robot config")
        index = self._index_cache[names]
        if index is None or len(msg.position) != len(names) or len(msg.velocity) != len(names):
            return  # ros2_control publishes position and velocity for every joint
        q = np.asarray(msg.position, dtype=np.float64)[index]
        qd = np.asarray(msg.velocity, dtype=np.float64)[index]
        with self.cond:
            self.state.q, self.state.qd = q, qd
            self.state.stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.state.count += 1
            self.cond.notify_all()

    def _wait_state(self, newer_than_count: int, newer_than_stamp: int, what: str) -> bool:
        """Wait for a state after `newer_than_count` with a stamp above `newer_than_stamp`."""
        while not self.stop:
            with self.cond:
                ok = self.cond.wait_for(
                    lambda: (
                        self.state.count > newer_than_count
                        and self.state.stamp_ns > newer_than_stamp
                    ),
                    timeout=self.state_timeout_s,
                )
            if ok:
                return True
            self.log.warning(
                f"no joint state {what} within {self.state_timeout_s} s; is the robot driver "
                f"(or sim_bridge) running and publishing on "
                f"{self.node.params['joint_states_topic']}?",
                throttle_duration_sec=WARN_THROTTLE_S,
            )
            return False
        return False

    def _reset(self) -> bool:
        """Call the reset service, then wait for a state received after its reply."""
        while not self.stop and not self.reset_client.wait_for_service(timeout_sec=0.5):
            self.log.warning(
                f"waiting for the reset service {self.reset_service}",
                throttle_duration_sec=WARN_THROTTLE_S,
            )
        if self.stop:
            return False
        done = threading.Event()
        future = self.reset_client.call_async(Trigger.Request())
        future.add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + self.state_timeout_s
        while not done.wait(0.1):
            if self.stop or time.monotonic() > deadline:
                self.log.warning(f"reset service {self.reset_service} did not answer in time")
                return False
        result = future.result()
        if result is None or not result.success:
            self.log.warning(f"reset failed: {getattr(result, 'message', 'no reply')}")
            return False
        with self.cond:
            count = self.state.count
        # The reset state may be stamped earlier than the last one (lockstep sim time), so
        # only the arrival order counts here.
        return self._wait_state(count, -1, "after the reset")

    def _reset_until_ok(self) -> bool:
        while not self.stop:
            if self._reset():
                return True
        return False

    def _observe(
        self, goal: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
        """The observation and the joint positions it was built from."""
        with self.cond:
            q, qd = self.state.q, self.state.qd
        assert q is not None and qd is not None
        return self.task.observation(q, qd, goal), np.asarray(q, dtype=np.float64)

    def _limited_command(self, action: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The action as a joint target (ReachTask.joint_target), rate-limited as deployment
        does.

        Without the limiter an exploring policy would command jumps of a radian per control
        period to a real arm. A non-finite action holds the last command.
        """
        if np.all(np.isfinite(action)):
            target = self.task.joint_target(action, self.last_command)
        else:
            self.log.warning("non-finite action: holding", throttle_duration_sec=WARN_THROTTLE_S)
            target = self.last_command
        self.last_command = self.limiter.limit(target, 1.0 / self.rate_hz)
        return self.last_command

    def _start_limiter(self) -> None:
        """Begin rate limiting at rest at the pose measured after a reset."""
        with self.cond:
            q = self.state.q
        assert q is not None
        pose = np.clip(np.asarray(q, dtype=np.float64), self.robot.lower, self.robot.upper)
        self.limiter.reset(pose)
        self.last_command = pose

    def _step(self, command: npt.NDArray[np.float64], next_tick: float) -> bool:
        with self.cond:
            count, stamp = self.state.count, self.state.stamp_ns
        self.command_pub.publish(Float64MultiArray(data=command.astype(np.float64).tolist()))
        if self.lockstep:
            return self._wait_state(count, stamp, "newer than the last command's")
        time.sleep(max(0.0, next_tick - time.monotonic()))  # fixed control rate
        return True

    def collect(
        self, policy_id: int, version: int, act: ActFn, num_steps: int
    ) -> tuple[RolloutBatch, list[bool]] | None:
        """T steps of one policy; each batch starts with a reset (policies share the robot).

        Returns the batch and, for each episode that ended in it (in the order of its
        `episode_returns`), whether the fingertip was within the success threshold on the
        episode's last step (`ReachTask.is_success`, as `info["is_success"]` of the in-process
        env). Returns None when stopped. An episode cut by the batch end counts as truncated.
        """
        episode_steps = self.robot.reach.episode_steps
        obs_dim, act_dim = self.task.obs_dim, self.task.act_dim
        obs = np.zeros((num_steps, obs_dim), np.float32)
        actions = np.zeros((num_steps, act_dim), np.float32)
        rewards = np.zeros(num_steps, np.float32)
        dones = np.zeros(num_steps, bool)
        returns: list[float] = []
        lengths: list[int] = []
        successes: list[bool] = []
        t_episode, episode_return = episode_steps, 0.0  # forces a reset at t = 0
        goal = np.zeros(3)
        period = 1.0 / self.rate_hz
        next_tick = time.monotonic()
        for t in range(num_steps):
            if t_episode >= episode_steps:
                if not self._reset_until_ok():
                    return None
                goal = self.task.sample_goal(self.rng)
                self._start_limiter()
                t_episode, episode_return = 0, 0.0
                next_tick = time.monotonic()
            obs[t], q_before = self._observe(goal)
            actions[t] = act(obs[t])
            next_tick += period
            command = self._limited_command(actions[t])
            while not self._step(command, next_tick):  # a lost command or state: resend
                if self.stop:
                    return None
            with self.cond:
                q = self.state.q
            assert q is not None  # set before the first step by the reset wait
            rewards[t] = self.task.reward(q_before, q, goal)
            episode_return += float(rewards[t])
            t_episode += 1
            if t_episode >= episode_steps:
                dones[t] = True  # truncated by the time limit, never terminal
                returns.append(episode_return)
                lengths.append(t_episode)
                successes.append(self.task.is_success(q, goal))
        batch = RolloutBatch(
            obs=obs,
            actions=actions,
            rewards=rewards,
            dones=dones,
            terminated=np.zeros(num_steps, bool),
            episode_returns=np.asarray(returns, np.float64),
            episode_lengths=np.asarray(lengths, np.int64),
        )
        return batch, successes

    def close(self) -> None:
        pass
