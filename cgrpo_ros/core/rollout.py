"""Algorithm 1 lines 4-5: collecting a policy's trajectory from a gymnasium task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.config import CGRPOConfig

ActFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def collector_seed(seed: int, policy_id: int, version: int, num_policies: int) -> int:
    """The env seed of policy `policy_id`'s collector, created when the run is at `version`.

    The single-process trainer and a ROS rollout worker both use it (and `sampling_rng`), so
    one run is reproducible either way and a resumed run does not replay its first episodes.
    """
    return seed * 1000 + policy_id + version * num_policies


def sampling_rng(seed: int, policy_id: int, version: int) -> np.random.Generator:
    """The generator of policy `policy_id`'s exploration noise, from `version` on."""
    return np.random.default_rng([seed, policy_id, version])


class RolloutCollector:
    """Steps one environment with a policy, T steps at a time, across episode boundaries.

    An episode that straddles two batches keeps counting its return, so reported episode
    returns are always of whole episodes.

    Success (goal-conditioned and reach tasks): `episode_successes` holds, for the episodes
    that ended in the last `collect` call and in the order of its `episode_returns`, the
    task's `info["is_success"]` on the episode's last step; it is None while the task has
    never reported `is_success`. It lives beside RolloutBatch, not in it (the update never
    reads it); the ROS path carries it in the trajectory frame's `episode_successes` section.
    """

    def __init__(self, env: gym.Env[Any, Any], seed: int) -> None:
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"CGRPO needs a continuous (Box) action space, got {space}")
        self.env = env
        self.action_low = np.asarray(space.low, dtype=np.float32)
        self.action_high = np.asarray(space.high, dtype=np.float32)
        obs, _ = env.reset(seed=seed)
        self._obs = np.asarray(obs, dtype=np.float32)
        self._episode_return = 0.0
        self._episode_length = 0
        self.reports_success = False
        self.episode_successes: list[bool] | None = None

    def collect(self, act: ActFn, num_steps: int) -> RolloutBatch:
        obs_dim = self._obs.shape[0]
        act_dim = self.action_low.shape[0]
        obs = np.zeros((num_steps, obs_dim), dtype=np.float32)
        actions = np.zeros((num_steps, act_dim), dtype=np.float32)
        rewards = np.zeros(num_steps, dtype=np.float32)
        dones = np.zeros(num_steps, dtype=bool)
        terminated = np.zeros(num_steps, dtype=bool)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        successes: list[bool] = []
        for t in range(num_steps):
            action = act(self._obs)
            obs[t], actions[t] = self._obs, action
            # The sampled action is stored unclipped (its log-probability is what the update
            # needs); only the environment sees it clipped to the bounds.
            next_obs, reward, term, trunc, info = self.env.step(
                np.clip(action, self.action_low, self.action_high)
            )
            rewards[t], dones[t], terminated[t] = reward, term or trunc, term
            self._episode_return += float(reward)
            self._episode_length += 1
            self._obs = np.asarray(next_obs, dtype=np.float32)
            if term or trunc:
                self.end_episode(info, episode_returns, episode_lengths, successes)
        self.episode_successes = successes if self.reports_success else None
        return RolloutBatch(
            obs=obs,
            actions=actions,
            rewards=rewards,
            dones=dones,
            terminated=terminated,
            episode_returns=np.asarray(episode_returns, dtype=np.float64),
            episode_lengths=np.asarray(episode_lengths, dtype=np.int64),
        )

    def end_episode(
        self,
        info: dict[str, Any],
        episode_returns: list[float],
        episode_lengths: list[int],
        successes: list[bool],
    ) -> None:
        """Record the episode that just ended (return, length, success) and reset the env."""
        episode_returns.append(self._episode_return)
        episode_lengths.append(self._episode_length)
        success = _success_flag(info)
        if success is not None:
            self.reports_success = True
        successes.append(bool(success))
        self._episode_return, self._episode_length = 0.0, 0
        next_obs, _ = self.env.reset()
        self._obs = np.asarray(next_obs, dtype=np.float32)


def _success_flag(info: dict[str, Any]) -> bool | None:
    """The task's `is_success` (gymnasium-robotics reports 0.0/1.0 floats), or None."""
    value = info.get("is_success")
    return None if value is None else bool(value)


def evaluate_with_success(
    env: gym.Env[Any, Any], act: ActFn, episodes: int, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_] | None]:
    """Returns of `episodes` whole episodes and, when the task reports `is_success`, whether
    each episode ended in success (its last step's flag); None otherwise."""
    space = env.action_space
    assert isinstance(space, gym.spaces.Box)
    returns = np.zeros(episodes, dtype=np.float64)
    successes = np.zeros(episodes, dtype=np.bool_)
    reported = False
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = act(np.asarray(obs, dtype=np.float32))
            obs, reward, term, trunc, info = env.step(np.clip(action, space.low, space.high))
            returns[episode] += float(reward)
            done = term or trunc
        success = _success_flag(info)
        reported = reported or success is not None
        successes[episode] = bool(success)
    return returns, (successes if reported else None)


def evaluate(
    env: gym.Env[Any, Any], act: ActFn, episodes: int, seed: int
) -> npt.NDArray[np.float64]:
    """Undiscounted return of `episodes` whole episodes with a (usually deterministic) policy."""
    return evaluate_with_success(env, act, episodes, seed)[0]


MeanFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class GroupSettings:
    """How a rollout stream forms same-state groups (CGRPOConfig.group_*).

    The learner writes them into every policy artifact it publishes (`cgrpo.rollout_*`), so a
    ROS rollout worker collects the way the learner's configuration says, from one source.
    """

    group_size: int
    horizon: int
    common_noise: bool

    @staticmethod
    def from_config(config: CGRPOConfig) -> GroupSettings | None:
        if config.group_size == 0:
            return None
        return GroupSettings(config.group_size, config.group_horizon, config.group_common_noise)

    def to_metadata(self) -> dict[str, str]:
        return {
            "rollout_group_size": str(self.group_size),
            "rollout_group_horizon": str(self.horizon),
            "rollout_common_noise": str(int(self.common_noise)),
        }

    @staticmethod
    def from_metadata(extra: dict[str, str]) -> GroupSettings | None:
        """The settings of a policy artifact's metadata; None for plain rollouts.

        Raises ValueError naming the key, its value and what is allowed.
        """
        if "rollout_group_size" not in extra:
            return None
        values = []
        for key, low, high in (
            ("rollout_group_size", 2, 1024),
            ("rollout_group_horizon", 1, 100_000),
            ("rollout_common_noise", 0, 1),
        ):
            text = extra.get(key, "")
            if not (text.isdigit() and low <= int(text) <= high):
                raise ValueError(
                    f"policy metadata cgrpo.{key} = {text[:40]!r}; allowed: an integer in "
                    f"[{low}, {high}]"
                )
            values.append(int(text))
        return GroupSettings(values[0], values[1], bool(values[2]))


class EnvSnapshotter(Protocol):
    """Takes and restores complete simulator states (sim_bridge/sim_state.py for MuJoCo)."""

    def snapshot(self, env: gym.Env[Any, Any]) -> Any: ...

    def restore(self, env: gym.Env[Any, Any], snap: Any) -> None: ...


class GroupRolloutCollector:
    """Same-state groups: G continuations of horizon H from one saved simulator state.

    The rollout is a chain of branch points. At each one the complete simulator state is
    saved, G branches of up to H steps are rolled out from it with the current policy (the
    state restored before each), and the last branch's end is where the trajectory goes on:
    each branch is an ordinary on-policy rollout from the same state, so the chain visits
    the states a plain rollout would. Every simulated step of every branch is in the batch
    and counts against the budget (`num_steps`).

    In the batch, branch g of point p is one contiguous segment: `dones` is True on its last
    step (an episode end or the horizon: return-to-go restarts there) and `branch_group`
    holds p for all its steps, so the learner can compare the branches of one point step by
    step (core/advantages.py, same_state_group_advantages).

    `common_noise`: branches share the action noise from their second step on (common random
    numbers), so the returns of one point differ mainly by their first action.

    Episode returns and success flags are those of the trajectory (the chain of continued
    branches), i.e. whole on-policy episodes.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        seed: int,
        settings: GroupSettings,
        snapshotter: EnvSnapshotter,
    ) -> None:
        if settings.group_size < 2 or settings.horizon < 1:
            raise ValueError(
                f"group_size={settings.group_size} (allowed: >= 2) and "
                f"horizon={settings.horizon} (allowed: >= 1)"
            )
        self.inner = RolloutCollector(env, seed)  # reset, bounds and success bookkeeping
        self.env = env
        self.group_size = settings.group_size
        self.horizon = settings.horizon
        self.snapshotter = snapshotter
        self.common_noise = settings.common_noise
        self.rng = np.random.default_rng([seed, 7919])
        self.total_steps = 0

    @property
    def episode_successes(self) -> list[bool] | None:
        return self.inner.episode_successes

    def branch_lengths(self, remaining: int) -> list[int]:
        """Planned length of each branch of the next point, within the remaining budget."""
        g, h = self.group_size, self.horizon
        if remaining >= g * h:
            return [h] * g
        base, extra = divmod(remaining, g)
        return [base + (1 if i < extra else 0) for i in range(g)]

    def collect(
        self, mean: MeanFn, log_std: npt.NDArray[np.float32], num_steps: int
    ) -> RolloutBatch:
        inner = self.inner
        obs_dim, act_dim = inner._obs.shape[0], inner.action_low.shape[0]
        std = np.exp(np.asarray(log_std, dtype=np.float32))
        obs = np.zeros((num_steps, obs_dim), dtype=np.float32)
        actions = np.zeros((num_steps, act_dim), dtype=np.float32)
        rewards = np.zeros(num_steps, dtype=np.float32)
        dones = np.zeros(num_steps, dtype=bool)
        terminated = np.zeros(num_steps, dtype=bool)
        branch_group = np.full(num_steps, -1, dtype=np.int64)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        successes: list[bool] = []
        t, point = 0, 0
        while t < num_steps:
            start_obs = inner._obs
            snap = self.snapshotter.snapshot(self.env)
            lengths = [n for n in self.branch_lengths(num_steps - t) if n > 0]
            shared = self.rng.standard_normal((self.horizon, act_dim)).astype(np.float32)
            for g, length in enumerate(lengths):
                if g > 0:
                    self.snapshotter.restore(self.env, snap)
                current = start_obs
                branch_return, ended = 0.0, False
                info: dict[str, Any] = {}
                for depth in range(length):
                    if depth > 0 and self.common_noise:
                        noise = shared[depth]
                    else:
                        noise = self.rng.standard_normal(act_dim, dtype=np.float32)
                    action = np.asarray(mean(current) + std * noise, dtype=np.float32)
                    obs[t], actions[t], branch_group[t] = current, action, point
                    next_obs, reward, term, trunc, info = self.env.step(
                        np.clip(action, inner.action_low, inner.action_high)
                    )
                    rewards[t], terminated[t] = reward, term
                    branch_return += float(reward)
                    current = np.asarray(next_obs, dtype=np.float32)
                    t += 1
                    if term or trunc:
                        ended = True
                        break
                dones[t - 1] = True  # the branch's segment ends here (episode end or horizon)
                last_branch = g == len(lengths) - 1
                if last_branch:  # the trajectory goes on from this branch's end
                    inner._episode_return += branch_return
                    inner._episode_length += depth + 1
                    inner._obs = current
                    if ended:
                        inner.end_episode(info, episode_returns, episode_lengths, successes)
            point += 1
        self.total_steps += num_steps  # every branch step, the env-step budget's count
        inner.episode_successes = successes if inner.reports_success else None
        return RolloutBatch(
            obs=obs,
            actions=actions,
            rewards=rewards,
            dones=dones,
            terminated=terminated,
            episode_returns=np.asarray(episode_returns, dtype=np.float64),
            episode_lengths=np.asarray(episode_lengths, dtype=np.int64),
            branch_group=branch_group,
        )
