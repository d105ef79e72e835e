"""Goal-conditioned tasks (gymnasium-robotics) as flat Box tasks CGRPO and the artifact accept.

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

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

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
