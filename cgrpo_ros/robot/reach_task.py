"""The reach task, shared by the gymnasium env and the ROS rollout worker.

Everything here is a function of joint positions, joint velocities and the goal, so a ROS
worker computes exactly the same observation and reward from `/joint_states` as the
in-process gymnasium env computes from the simulator.

Observation layout version 2 (names as in docs/architecture.md):
    [joint_pos/<j> for j in joints] + [joint_vel/<j> for j in joints] + [goal/0..2]
    + [fingertip/0..2] + [goal_offset/0..2]        (goal_offset = goal - fingertip)
Version 1 was the first 2n + 3 entries; the fingertip entries spare the policy learning the
arm's forward kinematics.
Action (`reach.action` of the robot config):
    fingertip_delta: 3 numbers in [-1, 1]; the fingertip should move by action x
        fingertip_step_m this step. `joint_target` turns that into joint position targets
        from the last joint command by damped least squares (the FrankaReach / FetchReach
        action space);
    joint_position: absolute joint position targets [rad], bounds = joint limits.
Reward: progress_reward_per_m x (distance before the step - distance after it)
    (+ success_bonus when the step ends within success_threshold_m): potential-based shaping
    of -distance (Ng et al., 1999), same optimal policy, and the returns no longer depend on how
    far the goal started (docs/algorithm.md, "The arm reach task").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from cgrpo_ros.robot.config import RobotConfig
from cgrpo_ros.robot.kinematics import ForwardKinematics

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

OBS_LAYOUT_VERSION = 2
# Damped least squares: lambda [m] keeps the step bounded near singular poses; the null-space
# gain pulls the redundant 7th degree of freedom back towards home a fraction per step, so the
# elbow does not drift over an episode.
DLS_DAMPING_M = 0.05
NULLSPACE_GAIN = 0.1
FINGERTIP_ACTION_NAMES = [f"fingertip_delta/{axis}" for axis in "xyz"]


class ReachTask:
    """Goal sampling, observation, reward and success of the reach task."""

    def __init__(self, robot: RobotConfig, model_path: str | Path | None = None) -> None:
        self.robot = robot
        self.config = robot.reach
        self._fk = ForwardKinematics(robot, model_path)
        n = robot.num_joints
        self.action_mode = self.config.action
        if self.action_mode == "fingertip_delta":
            self.action_low: Float32Array = np.full(3, -1.0, dtype=np.float32)
            self.action_high: Float32Array = np.full(3, 1.0, dtype=np.float32)
        else:
            self.action_low = robot.lower.astype(np.float32)
            self.action_high = robot.upper.astype(np.float32)
        self.goal_low: FloatArray = np.asarray(self.config.goal_low, dtype=np.float64)
        self.goal_high: FloatArray = np.asarray(self.config.goal_high, dtype=np.float64)
        # Velocities are unbounded in principle; positions are clipped to the limits in
        # `observation` so the observation always lies in this box.
        unbounded = np.full(n + 6, np.inf)  # velocities, fingertip and offset
        self.observation_low: Float32Array = np.concatenate(
            [robot.lower, -unbounded[:n], self.goal_low, -unbounded[n:]]
        ).astype(np.float32)
        self.observation_high: Float32Array = np.concatenate(
            [robot.upper, unbounded[:n], self.goal_high, unbounded[n:]]
        ).astype(np.float32)

    @property
    def obs_dim(self) -> int:
        return 2 * self.robot.num_joints + 9

    @property
    def act_dim(self) -> int:
        return len(self.action_low)

    def observation_names(self) -> list[str]:
        joints = self.robot.joint_names
        return (
            [f"joint_pos/{j}" for j in joints]
            + [f"joint_vel/{j}" for j in joints]
            + [f"goal/{i}" for i in range(3)]
            + [f"fingertip/{i}" for i in range(3)]
            + [f"goal_offset/{i}" for i in range(3)]
        )

    def action_names(self) -> list[str]:
        if self.action_mode == "fingertip_delta":
            return list(FINGERTIP_ACTION_NAMES)
        return list(self.robot.joint_names)

    def rest_action(self) -> Float32Array:
        """The action that holds the arm still (at home after a reset)."""
        if self.action_mode == "fingertip_delta":
            return np.zeros(3, dtype=np.float32)
        return self.robot.home_array.astype(np.float32)

    def joint_target(self, action: npt.ArrayLike, last_command: npt.ArrayLike) -> FloatArray:
        """The joint position target [rad] an action asks for, within the joint limits.

        `last_command` is the previous joint command actually sent (after rate limiting):
        fingertip steps are taken from it, so a rate-limited step is not accumulated twice.
        Raises ValueError for an action of the wrong size or with non-finite values.
        """
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.action_low.shape or not np.all(np.isfinite(a)):
            raise ValueError(
                f"action = {a.tolist()}: expected {len(self.action_low)} finite numbers "
                f"({', '.join(self.action_names())})"
            )
        if self.action_mode == "joint_position":
            return np.clip(a, self.robot.lower, self.robot.upper)
        q = np.asarray(last_command, dtype=np.float64).reshape(-1)
        step = np.clip(a, -1.0, 1.0) * self.config.fingertip_step_m
        jac = self._fk.jacobian(q)
        # dq = J^T (J J^T + lambda^2 I)^-1 dx, plus a pull to home in J's null space.
        jac_pinv = jac.T @ np.linalg.inv(jac @ jac.T + DLS_DAMPING_M**2 * np.eye(3))
        null_space = np.eye(len(q)) - jac_pinv @ jac
        dq = jac_pinv @ step + null_space @ (NULLSPACE_GAIN * (self.robot.home_array - q))
        return np.clip(q + dq, self.robot.lower, self.robot.upper)

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
        g = self._goal(goal)
        tip = self._fk(q_arr)
        return np.concatenate([q_arr, qd_arr, g, tip, g - tip]).astype(np.float32)

    def reward(self, q_before: npt.ArrayLike, q: npt.ArrayLike, goal: npt.ArrayLike) -> float:
        """Reward of the step that moved the joints from `q_before` to `q`."""
        d = self.distance(q, goal)
        progress = self.distance(q_before, goal) - d
        bonus = self.config.success_bonus if d < self.config.success_threshold_m else 0.0
        return self.config.progress_reward_per_m * progress + bonus

    def is_success(self, q: npt.ArrayLike, goal: npt.ArrayLike) -> bool:
        return self.distance(q, goal) < self.config.success_threshold_m

    @staticmethod
    def _goal(goal: npt.ArrayLike) -> FloatArray:
        g = np.asarray(goal, dtype=np.float64).reshape(-1)
        if g.shape != (3,) or not np.all(np.isfinite(g)):
            raise ValueError(f"goal = {g.tolist()}: expected 3 finite numbers (x, y, z) [m]")
        return g
