"""Tasks: the env factory (`make_env`), what a policy artifact must know about its task
(`TaskSpec`), and goal-conditioned tasks (gymnasium-robotics) as flat Box tasks CGRPO and the
artifact accept.

gymnasium-robotics tasks (FetchReach, HandManipulateBlock, ...) return a dict observation
`{"observation", "achieved_goal", "desired_goal"}`. CGRPO, the ONNX contract and the policy
server take one float32 vector, so `FlattenGoalObservation` concatenates the three parts in a
fixed, documented order and names every entry. The names and `GOAL_OBS_LAYOUT_VERSION` reach
the ONNX metadata through `TaskSpec.from_env` (docs/architecture.md), so a policy trained on
one layout is never fed another silently.

Layout version 1 (`GOAL_OBS_LAYOUT`):
    [observation/0 .. observation/{n-1},
     achieved_goal/0 .. achieved_goal/{g-1},
     desired_goal/0 .. desired_goal/{g-1}]      float32, n + 2g entries
The order is ours, not the dict's: gymnasium sorts Dict keys alphabetically (achieved_goal
first), which would silently change if a key were renamed. FetchReach-v4: n = 10, g = 3 → 16.
`info["is_success"]` passes through unchanged (as the task reports it, 0.0 or 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from cgrpo_ros.core.policy_artifact import PolicyMetadata

GOAL_OBS_LAYOUT = "goal_dict_flat"
"""Name of the flattened goal-dict layout, written as `cgrpo.obs_layout` in the metadata."""
GOAL_OBS_LAYOUT_VERSION = 1
"""Bump when the order or naming of `GOAL_KEYS` changes (written as `cgrpo.obs_layout_version`)."""
GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")
"""The dict entries in the order they are concatenated."""

# Task id prefixes of gymnasium-robotics' goal-conditioned MuJoCo tasks (v1.4.2 registers
# FetchReach-v4, HandManipulateBlock-v1, ... and their Dense variants).
GOAL_TASK_PREFIXES = ("Fetch", "HandManipulate", "HandReach")

Float32Array = npt.NDArray[np.float32]


def is_goal_task(env_id: str) -> bool:
    """True for the gymnasium-robotics goal-conditioned ids `make_env` flattens."""
    return env_id.startswith(GOAL_TASK_PREFIXES)


def register_gymnasium_robotics() -> None:
    """Register gymnasium-robotics' tasks with gymnasium (idempotent).

    Imported on demand: it is a heavy import and only goal tasks need it.
    """
    try:
        import gymnasium_robotics
    except ImportError as exc:
        raise ValueError(
            "gymnasium-robotics tasks need `pip install gymnasium-robotics==1.4.2` "
            "(with mujoco==3.3.7, see requirements.txt)"
        ) from exc
    gym.register_envs(gymnasium_robotics)


class FlattenGoalObservation(gym.ObservationWrapper[Float32Array, Any, dict[str, Any]]):
    """Dict goal observation → one float32 vector in layout `GOAL_OBS_LAYOUT_VERSION`.

    Exposes `observation_names()`, `action_names()` and `obs_layout_version` so
    `TaskSpec.from_env` (which looks through the wrappers) writes them into the policy
    metadata.
    """

    obs_layout = GOAL_OBS_LAYOUT
    obs_layout_version = GOAL_OBS_LAYOUT_VERSION

    def __init__(self, env: gym.Env[dict[str, Any], Any]) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or set(space.spaces) != set(GOAL_KEYS):
            raise ValueError(
                f"FlattenGoalObservation needs a Dict observation space with keys "
                f"{list(GOAL_KEYS)}; got {space}"
            )
        parts: list[spaces.Box] = []
        for key in GOAL_KEYS:
            part = space.spaces[key]
            if not isinstance(part, spaces.Box):
                raise ValueError(f"observation[{key!r}] is {part}; expected a Box")
            parts.append(part)
        self._sizes = [int(np.prod(p.shape)) for p in parts]
        self.observation_space = spaces.Box(
            low=np.concatenate([p.low.reshape(-1) for p in parts]).astype(np.float32),
            high=np.concatenate([p.high.reshape(-1) for p in parts]).astype(np.float32),
            dtype=np.float32,
        )

    def observation(self, observation: dict[str, Any]) -> Float32Array:
        return np.concatenate(
            [np.asarray(observation[key], dtype=np.float32).reshape(-1) for key in GOAL_KEYS]
        )

    def observation_names(self) -> list[str]:
        """`<key>/<i>` for every entry, in layout order (see the module docstring)."""
        return [
            f"{key}/{i}" for key, size in zip(GOAL_KEYS, self._sizes, strict=True)
            for i in range(size)
        ]  # fmt: skip

    def action_names(self) -> list[str]:
        space = self.action_space
        size = int(np.prod(space.shape)) if space.shape is not None else 0
        return [f"act/{i}" for i in range(size)]


def make_goal_env(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """gymnasium.make for a gymnasium-robotics id, flattened (layout version 1)."""
    register_gymnasium_robotics()
    return FlattenGoalObservation(gym.make(env_id, **kwargs))


def make_env(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """gymnasium.make, with the project's own tasks (cgrpo_ros/...) registered first."""
    if env_id.startswith("cgrpo_ros/"):
        from sim_bridge.envs import register_envs

        register_envs()
    elif is_goal_task(env_id):
        # Dict goal observations, flattened in a versioned layout (cgrpo_ros/tasks.py).
        return make_goal_env(env_id, **kwargs)
    return gym.make(env_id, **kwargs)


def _wrapper_attr(env: gym.Env[Any, Any], name: str) -> Any:
    """`name` from the outermost wrapper that has it, down to the unwrapped env, or None.

    Looks through wrappers (not only `env.unwrapped`) because FlattenGoalObservation, a
    wrapper, is what knows the names of a flattened goal observation.
    """
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return None


@dataclass(frozen=True)
class TaskSpec:
    """What a policy artifact must know about its task (sizes, names and bounds)."""

    env_id: str
    obs_names: list[str]
    action_names: list[str]
    action_low: list[float]
    action_high: list[float]
    obs_layout_version: int = 1
    """Written as `cgrpo.obs_layout_version`; 1 unless the env says otherwise."""
    obs_layout: str = ""
    """Layout family (e.g. `goal_dict_flat`), written as `cgrpo.obs_layout` when set."""
    rest_action: list[float] | None = None
    """The env's `rest_action()` (an arm's home pose), where untrained policies start."""
    action_mode: str = "joint_position"
    """Written as `cgrpo.action_mode`: how a deployed action becomes joint targets."""
    action_settings: dict[str, str] = field(default_factory=dict)
    """The env's `action_settings` (e.g. `fingertip_step_m`), written as `cgrpo.<key>`."""

    @property
    def obs_dim(self) -> int:
        return len(self.obs_names)

    def metadata_extra(self) -> dict[str, str]:
        """The task's entries of the policy metadata beyond PolicyMetadata's own fields."""
        layout = {"obs_layout": self.obs_layout} if self.obs_layout else {}
        return {**layout, **self.action_settings}

    @property
    def act_dim(self) -> int:
        return len(self.action_names)

    def policy_metadata(
        self,
        policy_id: int,
        policy_version: int,
        *,
        config_hash: str = "",
        extra: dict[str, str] | None = None,
    ) -> PolicyMetadata:
        """The metadata of a policy artifact for this task: the one place that turns a task's
        sizes, names, bounds, layout and action mode into what workers and the policy server
        check (training, `cgrpo export` and the tests' model builders all use it)."""
        return PolicyMetadata(
            policy_id=policy_id,
            policy_version=policy_version,
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            obs_names=self.obs_names,
            action_names=self.action_names,
            action_low=self.action_low,
            action_high=self.action_high,
            task=self.env_id,
            config_hash=config_hash,
            obs_layout_version=self.obs_layout_version,
            action_mode=self.action_mode,
            extra={**self.metadata_extra(), **(extra or {})},
        )

    @staticmethod
    def from_env(env_id: str, **env_kwargs: Any) -> TaskSpec:
        """The spec of `make_env(env_id, **env_kwargs)`, e.g. `robot=` for the arm's tasks."""
        env = make_env(env_id, **env_kwargs)
        try:
            obs_space, act_space = env.observation_space, env.action_space
            if not isinstance(act_space, gym.spaces.Box) or not isinstance(
                obs_space, gym.spaces.Box
            ):
                raise ValueError(
                    f"task {env_id!r} has observation space {obs_space} and action space "
                    f"{act_space}; CGRPO needs flat Box spaces (continuous control)"
                )
            obs_names = _wrapper_attr(env, "observation_names")
            action_names = _wrapper_attr(env, "action_names")
            layout_version = _wrapper_attr(env, "obs_layout_version")
            rest_action = _wrapper_attr(env, "rest_action")
            obs_dim, act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
            return TaskSpec(
                env_id=env_id,
                obs_names=list(obs_names()) if obs_names else [f"obs/{i}" for i in range(obs_dim)],
                action_names=(
                    list(action_names()) if action_names else [f"act/{i}" for i in range(act_dim)]
                ),
                action_low=[float(x) for x in act_space.low],
                action_high=[float(x) for x in act_space.high],
                obs_layout_version=int(layout_version) if layout_version is not None else 1,
                obs_layout=str(_wrapper_attr(env, "obs_layout") or ""),
                rest_action=[float(x) for x in rest_action()] if rest_action else None,
                action_mode=str(_wrapper_attr(env, "action_mode") or "joint_position"),
                action_settings=dict(_wrapper_attr(env, "action_settings") or {}),
            )
        finally:
            env.close()
