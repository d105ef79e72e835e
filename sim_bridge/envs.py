"""Gymnasium adapter: the reach task on the simulated arm, in-process (no ROS).

`cgrpo_ros/Arm7Reach-v0` steps the same ArmSim and ReachTask the sim_bridge node and the ROS
rollout worker use, so a policy trained here deploys on the node stack unchanged.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from cgrpo_ros.robot.config import RobotConfig, load_robot_config
from cgrpo_ros.robot.reach_task import OBS_LAYOUT_VERSION, ReachTask
from sim_bridge.arm_sim import ArmSim

ENV_ID = "cgrpo_ros/Arm7Reach-v0"

Float32Array = npt.NDArray[np.float32]


class Arm7ReachEnv(gymnasium.Env[Float32Array, Float32Array]):
    """Move the fingertip of the arm7 robot to a goal sampled in a box.

    One env step = one control period (1 / control_rate_hz): the action (a fingertip step or
    joint targets, ReachTask) becomes a joint position command held for the physics substeps.
    Episodes never terminate (the arm should stay at the goal); they are truncated after
    episode_steps.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's API)

    def __init__(
        self,
        robot: RobotConfig | None = None,
        robot_config_path: str | Path | None = None,
        model_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.robot = robot if robot is not None else load_robot_config(robot_config_path)
        self.sim = ArmSim(self.robot, model_path)
        self.task = ReachTask(self.robot, model_path)
        self.limiter = self.robot.command_limiter()
        substeps = self.robot.control_period_s / self.sim.timestep
        self.n_substeps = round(substeps)
        if self.n_substeps < 1 or abs(substeps - self.n_substeps) > 1e-6:
            raise ValueError(
                f"control_rate_hz = {self.robot.control_rate_hz}: the control period must be a "
                f"whole number of physics timesteps ({self.sim.timestep} s)"
            )
        self.observation_space = spaces.Box(
            self.task.observation_low, self.task.observation_high, dtype=np.float32
        )
        self.action_space = spaces.Box(
            self.task.action_low, self.task.action_high, dtype=np.float32
        )
        self.goal = np.asarray(self.task.goal_low + self.task.goal_high) / 2.0
        self._steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Float32Array, dict[str, Any]]:
        super().reset(seed=seed)
        self.sim.reset()
        self.goal = self.task.sample_goal(self.np_random)
        if options and "goal" in options:
            self.goal = np.asarray(options["goal"], dtype=np.float64)
        self.sim.set_goal_marker(self.goal)
        self.limiter.reset(self.sim.joint_positions())
        self._steps = 0
        return self._obs(), self._info()

    def step(self, action: Float32Array) -> tuple[Float32Array, float, bool, bool, dict[str, Any]]:
        # The action becomes a joint position target (reach.action says how); like on the
        # real arm, what reaches the joints is that target rate-limited (the deploy-time
        # guarantee behind Eq. 10). A non-finite action raises (never silently held).
        target = self.task.joint_target(action, self.limiter.last_command)
        self.sim.set_position_command(self.limiter.limit(target, self.robot.control_period_s))
        q_before = self.sim.joint_positions()
        self.sim.step(self.n_substeps)
        self._steps += 1
        q = self.sim.joint_positions()
        reward = self.task.reward(q_before, q, self.goal)
        truncated = self._steps >= self.robot.reach.episode_steps
        return self._obs(), reward, False, truncated, self._info()

    def snapshot_extra(self) -> dict[str, Any]:
        """The env's Python state beside the physics and `goal` (sim_bridge/sim_state.py): the
        episode step counter and the rate limiter, whose last command the next action starts
        from."""
        return {"steps": self._steps, "limiter": copy.deepcopy(self.limiter)}

    def restore_extra(self, extra: dict[str, Any]) -> None:
        self._steps = int(extra["steps"])
        self.limiter = copy.deepcopy(extra["limiter"])

    def rest_action(self) -> Float32Array:
        """The action that holds the arm still (where untrained policies start, TaskSpec)."""
        return self.task.rest_action()

    @property
    def obs_layout_version(self) -> int:
        """Written into exported policies as `cgrpo.obs_layout_version` (TaskSpec)."""
        return OBS_LAYOUT_VERSION

    @property
    def action_mode(self) -> str:
        """Written into exported policies as `cgrpo.action_mode` (TaskSpec)."""
        return self.task.action_mode

    @property
    def action_settings(self) -> dict[str, str]:
        """Written into exported policies (TaskSpec), so the policy server can refuse a robot
        config whose fingertip step differs from the one the policy was trained with."""
        if self.task.action_mode == "fingertip_delta":
            return {"fingertip_step_m": repr(self.robot.reach.fingertip_step_m)}
        return {}

    def observation_names(self) -> list[str]:
        """Names of the observation entries, written into exported policies (TaskSpec)."""
        return self.task.observation_names()

    def action_names(self) -> list[str]:
        """The joint each action entry commands, in order."""
        return self.task.action_names()

    def _obs(self) -> Float32Array:
        return self.task.observation(
            self.sim.joint_positions(), self.sim.joint_velocities(), self.goal
        )

    def _info(self) -> dict[str, Any]:
        q = self.sim.joint_positions()
        return {
            "is_success": self.task.is_success(q, self.goal),
            "distance": self.task.distance(q, self.goal),
            "goal": self.goal.copy(),
        }


def register_envs() -> None:
    """Register `cgrpo_ros/Arm7Reach-v0` with gymnasium (safe to call more than once)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=ENV_ID,
            entry_point="sim_bridge.envs:Arm7ReachEnv",
            max_episode_steps=None,  # the env truncates itself at reach.episode_steps
        )
