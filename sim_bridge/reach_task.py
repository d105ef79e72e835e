"""The reach task, shared by the gymnasium env and the ROS rollout worker.

Everything here is a function of joint positions, joint velocities and the goal, so a ROS
worker computes exactly the same observation and reward from `/joint_states` as the
in-process gymnasium env computes from the simulator.

Observation layout (names as in docs/architecture.md):
    [joint_pos/<j> for j in joints] + [joint_vel/<j> for j in joints] + [goal/0, goal/1, goal/2]
Action: absolute joint position command [rad], one per joint, bounds = joint limits.
Reward: -||fingertip(q) - goal|| (+ success_bonus while within success_threshold_m).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from sim_bridge.arm_sim import ForwardKinematics
from sim_bridge.robot_config import RobotConfig

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

OBS_LAYOUT_VERSION = 1


class ReachTask:
    """Goal sampling, observation, reward and success of the reach task."""

    def __init__(self, robot: RobotConfig, model_path: str | Path | None = None) -> None:
        self.robot = robot
        self.config = robot.reach
        self._fk = ForwardKinematics(robot, model_path)
        n = robot.num_joints
        self.action_low: Float32Array = robot.lower.astype(np.float32)
        self.action_high: Float32Array = robot.upper.astype(np.float32)
        self.goal_low: FloatArray = np.asarray(self.config.goal_low, dtype=np.float64)
        self.goal_high: FloatArray = np.asarray(self.config.goal_high, dtype=np.float64)
        # Velocities are unbounded in principle; positions are clipped to the limits in
        # `observation` so the observation always lies in this box.
        self.observation_low: Float32Array = np.concatenate(
            [robot.lower, np.full(n, -np.inf), self.goal_low]
        ).astype(np.float32)
        self.observation_high: Float32Array = np.concatenate(
            [robot.upper, np.full(n, np.inf), self.goal_high]
        ).astype(np.float32)

    @property
    def obs_dim(self) -> int:
        return 2 * self.robot.num_joints + 3

    @property
    def act_dim(self) -> int:
        return self.robot.num_joints

    def observation_names(self) -> list[str]:
        joints = self.robot.joint_names
        return (
            [f"joint_pos/{j}" for j in joints]
            + [f"joint_vel/{j}" for j in joints]
            + [f"goal/{i}" for i in range(3)]
        )

    def action_names(self) -> list[str]:
        return list(self.robot.joint_names)

    def sample_goal(self, rng: np.random.Generator) -> FloatArray:
        """A goal uniformly in the configured workspace box [m]."""
        return rng.uniform(self.goal_low, self.goal_high)

    def fingertip(self, q: npt.ArrayLike) -> FloatArray:
        return self._fk(q)

    def distance(self, q: npt.ArrayLike, goal: npt.ArrayLike) -> float:
        return float(np.linalg.norm(self._fk(q) - self._goal(goal)))

    def observation(self, q: npt.ArrayLike, qd: npt.ArrayLike, goal: npt.ArrayLike) -> Float32Array:
        n = self.robot.num_joints
        q_arr = np.asarray(q, dtype=np.float64).reshape(-1)
        qd_arr = np.asarray(qd, dtype=np.float64).reshape(-1)
        if q_arr.shape != (n,) or qd_arr.shape != (n,):
            raise ValueError(
                f"observation needs {n} joint positions and {n} velocities, got "
                f"{q_arr.size} and {qd_arr.size}"
            )
        # MuJoCo's soft limits allow ~1e-3 rad of penetration; clipping keeps the observation
        # inside observation_low/high and changes nothing a policy could notice.
        q_arr = np.clip(q_arr, self.robot.lower, self.robot.upper)
        return np.concatenate([q_arr, qd_arr, self._goal(goal)]).astype(np.float32)

    def reward(self, q: npt.ArrayLike, goal: npt.ArrayLike) -> float:
        d = self.distance(q, goal)
        bonus = self.config.success_bonus if d < self.config.success_threshold_m else 0.0
        return -d + bonus

    def is_success(self, q: npt.ArrayLike, goal: npt.ArrayLike) -> bool:
        return self.distance(q, goal) < self.config.success_threshold_m

    @staticmethod
    def _goal(goal: npt.ArrayLike) -> FloatArray:
        g = np.asarray(goal, dtype=np.float64).reshape(-1)
        if g.shape != (3,) or not np.all(np.isfinite(g)):
            raise ValueError(f"goal = {g.tolist()}: expected 3 finite numbers (x, y, z) [m]")
        return g
