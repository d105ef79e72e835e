"""Same-state groups (issue 13): simulator snapshots, group-relative advantages by hand,
the linear feature baseline by hand, and the env-step accounting of branched rollouts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cgrpo_ros.core.advantages import (
    branch_depths,
    linear_feature_baseline,
    return_to_go,
    same_state_group_advantages,
)
from cgrpo_ros.core.config import CGRPOConfig, ConfigError
from cgrpo_ros.core.policy_artifact import OnnxPolicy
from cgrpo_ros.core.rollout import GroupRolloutCollector, GroupSettings
from cgrpo_ros.session import make_collector, train_single_process
from cgrpo_ros.tasks import make_env
from sim_bridge.sim_state import MujocoSnapshotter, SnapshotError, restore, snapshot

# Arm7Reach: the project's own env (goal, limiter); FetchReach: a gymnasium-robotics goal task.
SNAPSHOT_TASKS = [
    "HalfCheetah-v5",
    "Hopper-v5",
    "cgrpo_ros/Arm7Reach-v0",
    "Ant-v5",
    "FetchReach-v4",
]


def _continuation(env: Any, actions: list[np.ndarray]) -> list[tuple[Any, ...]]:
    out = []
    for action in actions:
        obs, reward, term, trunc, info = env.step(action)
        out.append((obs.copy(), reward, term, trunc, info.get("is_success")))
        if term or trunc:
            break
    return out


@pytest.mark.parametrize("task", SNAPSHOT_TASKS)
def test_restored_state_replays_the_same_continuation_bit_for_bit(task: str) -> None:
    env = make_env(task)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    # Small actions keep Hopper standing, so the continuation is long enough to mean much.
    for _ in range(20):
        env.step((0.1 * rng.uniform(low, high)).astype(np.float32))
    snap = snapshot(env)
    actions = [(0.1 * rng.uniform(low, high)).astype(np.float32) for _ in range(60)]
    first = _continuation(env, actions)
    restore(env, snap)
    second = _continuation(env, actions)
    assert len(first) == len(second) >= 10
    for a, b in zip(first, second, strict=True):
        assert a[0].tobytes() == b[0].tobytes()  # bit for bit, not approximately
        assert a[1:] == b[1:]
    # The episode step counter is part of the state (TimeLimit's, or Arm7Reach's own).
    restore(env, snap)
    unwrapped: Any = env.unwrapped
    if hasattr(unwrapped, "_steps"):
        counter = unwrapped._steps
    else:
        counter = env.get_wrapper_attr("_elapsed_steps")
    assert counter == 20


def test_snapshot_restores_the_step_counter_and_the_reset_rng() -> None:
    env = make_env("HalfCheetah-v5")
    env.reset(seed=1)
    for _ in range(5):
        env.step(env.action_space.sample())
    snap = snapshot(env)
    for _ in range(7):
        env.step(env.action_space.sample())
    reset_after = env.reset()[0]  # draws from the env's np_random
    restore(env, snap)
    assert env.get_wrapper_attr("_elapsed_steps") == 5
    assert env.reset()[0].tobytes() == reset_after.tobytes()


def test_snapshot_of_a_non_mujoco_task_is_refused_with_the_task_named() -> None:
    import gymnasium as gym

    with pytest.raises(SnapshotError, match=r"Pendulum-v1.*MuJoCo"):
        snapshot(gym.make("Pendulum-v1"))


def test_snapshot_of_another_task_is_refused() -> None:
    cheetah, hopper = make_env("HalfCheetah-v5"), make_env("Hopper-v5")
    cheetah.reset(seed=0)
    hopper.reset(seed=0)
    with pytest.raises(SnapshotError, match="another task"):
        restore(hopper, snapshot(cheetah))


def test_branch_depths_restart_after_every_segment_end() -> None:
    dones = np.array([False, False, True, False, True, True, False])
    assert branch_depths(dones).tolist() == [0, 1, 2, 0, 1, 0, 0]


def test_same_state_group_advantages_by_hand() -> None:
    # Point 0: three branches of lengths 2, 2 and 1 (the third ended early); point 1: two
    # branches of length 1. Returns are given directly (any G_t works).
    returns = np.array([3.0, 1.0, 5.0, 2.0, 1.0, 4.0, 6.0])
    dones = np.array([False, True, False, True, True, True, True])
    group = np.array([0, 0, 0, 0, 0, 1, 1])
    got = same_state_group_advantages(
        returns, dones, group, credit="all_steps", scale="none", delta=1e-8
    )
    # Depth 0 of point 0: {3, 5, 1}, mean 3. Depth 1 of point 0: {1, 2}, mean 1.5.
    # Point 1, depth 0: {4, 6}, mean 5.
    assert np.allclose(got, [0.0, -0.5, 2.0, 0.5, -2.0, -1.0, 1.0])
    scaled = same_state_group_advantages(
        returns, dones, group, credit="all_steps", scale="std", delta=0.0
    )
    std0 = math.sqrt(((3 - 3) ** 2 + (5 - 3) ** 2 + (1 - 3) ** 2) / 3)
    assert np.allclose(scaled, [0.0, -1.0, 2 / std0, 1.0, -2 / std0, -1.0, 1.0])
    first = same_state_group_advantages(
        returns, dones, group, credit="first_action", scale="none", delta=1e-8
    )
    assert np.allclose(first, [0.0, 0.0, 2.0, 0.0, -2.0, -1.0, 1.0])


def test_a_branch_with_no_sibling_and_ungrouped_steps_get_zero() -> None:
    returns = np.array([1.0, 2.0, 7.0, 9.0])
    dones = np.array([False, True, True, True])
    group = np.array([0, 0, 0, -1])  # depth 1 of point 0 has one branch; the last: no group
    got = same_state_group_advantages(
        returns, dones, group, credit="all_steps", scale="std", delta=1e-8
    )
    assert got[1] == 0.0 and got[3] == 0.0
    assert np.allclose(got[[0, 2]], [-1.0, 1.0], atol=1e-6)


def test_linear_feature_baseline_is_the_ridge_fit_written_out() -> None:
    rng = np.random.default_rng(0)
    states = rng.normal(size=(50, 2))
    steps = np.arange(50) % 10
    returns = 2.0 * states[:, 0] - states[:, 1] ** 2 + 0.5 * steps / 100.0 + 3.0
    got = linear_feature_baseline(states, steps, returns)
    t = steps[:, None] / 100.0
    x = states
    features = np.hstack([x, x**2, t, t**2, t**3, np.ones_like(t)])
    weights = np.linalg.solve(features.T @ features + 1e-5 * np.eye(8), features.T @ returns)
    assert np.allclose(got, features @ weights)
    assert np.allclose(got, returns, atol=1e-3)  # the target lies in the feature span


class _CountingSnapshotter(MujocoSnapshotter):
    def __init__(self) -> None:
        self.snapshots = 0
        self.restores = 0

    def snapshot(self, env: Any) -> Any:
        self.snapshots += 1
        return super().snapshot(env)

    def restore(self, env: Any, snap: Any) -> None:
        self.restores += 1
        super().restore(env, snap)


def test_group_collector_counts_every_branch_step_against_the_budget() -> None:
    env = make_env("HalfCheetah-v5", max_episode_steps=100)
    snapshotter = _CountingSnapshotter()
    collector = GroupRolloutCollector(
        env, seed=0, settings=GroupSettings(3, 8, False), snapshotter=snapshotter
    )
    act_dim = env.action_space.shape[0]

    def zero_mean(obs: np.ndarray) -> np.ndarray:
        return np.zeros(act_dim, dtype=np.float32)

    batch = collector.collect(zero_mean, np.full(act_dim, -1.0, np.float32), 250)
    assert batch.num_steps == 250 and collector.total_steps == 250
    assert batch.branch_group is not None and (batch.branch_group >= 0).all()
    # 250 = 10 full points of 3 x 8 (240 steps), then 10 steps split as 4 + 3 + 3.
    assert int(batch.branch_group.max()) == 10
    assert snapshotter.snapshots == 11 and snapshotter.restores == 11 * 2
    depth = branch_depths(batch.dones)
    assert depth.max() == 7
    # The trajectory went on through the last branch of each point: 10 x 8 + 3 = 83 steps of
    # the 100-step episode, so no episode has ended yet ...
    assert len(batch.episode_returns) == 0
    batch = collector.collect(zero_mean, np.full(act_dim, -1.0, np.float32), 240)
    # ... and 17 steps later it has, with the trajectory's own return (the continued branches).
    assert batch.episode_lengths.tolist() == [100]
    assert collector.total_steps == 490


def test_common_noise_makes_branches_differ_only_in_their_first_action() -> None:
    env = make_env("HalfCheetah-v5")
    collector = GroupRolloutCollector(
        env, seed=0, settings=GroupSettings(3, 4, True), snapshotter=MujocoSnapshotter()
    )
    act_dim = env.action_space.shape[0]
    batch = collector.collect(lambda obs: np.zeros(act_dim, np.float32), np.zeros(act_dim), 12)
    branches = batch.actions.reshape(3, 4, act_dim)  # one point: 3 branches of 4 steps
    assert not np.allclose(branches[0, 0], branches[1, 0])
    assert np.array_equal(branches[0, 1:], branches[1, 1:])
    assert np.array_equal(branches[0, 1:], branches[2, 1:])
    # Every branch starts from the same observation: the same simulator state.
    assert np.array_equal(batch.obs[0], batch.obs[4]) and np.array_equal(batch.obs[0], batch.obs[8])


def test_group_config_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match="group_size=1 is not allowed"):
        CGRPOConfig(group_size=1)
    with pytest.raises(ConfigError, match="group_horizon=0"):
        CGRPOConfig(group_horizon=0)
    with pytest.raises(ConfigError, match="group_credit='last'"):
        CGRPOConfig(group_credit="last")  # type: ignore[arg-type]
    with pytest.raises(SnapshotError, match="Pendulum-v1"):
        make_collector("Pendulum-v1", GroupSettings(2, 8, False), seed=0)


def test_training_with_same_state_groups_counts_branch_steps(tmp_path: Path) -> None:
    config = CGRPOConfig.for_variant(
        "full", num_policies=2, num_groups=2, group_size=4, group_horizon=16, seed=0
    )
    summary = train_single_process(
        env_id="InvertedPendulum-v5", config=config, iterations=2, steps_per_iteration=256,
        run_dir=tmp_path / "run", checkpoint_every=10,
    )  # fmt: skip
    # 2 iterations x 2 policies x 256 simulated steps, branches included.
    assert summary["env_steps"] == 2 * 2 * 256
    assert summary["config"]["group_size"] == 4
    # The published artifact tells ROS workers to collect the same way.
    policy = OnnxPolicy((tmp_path / "run" / "policy_0.onnx").read_bytes())
    assert GroupSettings.from_metadata(policy.metadata.extra) == GroupSettings(4, 16, False)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"rollout_group_size": "1", "rollout_group_horizon": "8", "rollout_common_noise": "0"},
         "rollout_group_size = '1'; allowed: an integer in \\[2, 1024\\]"),
        ({"rollout_group_size": "4", "rollout_common_noise": "0"}, "rollout_group_horizon = ''"),
        ({"rollout_group_size": "4", "rollout_group_horizon": "8", "rollout_common_noise": "x"},
         "rollout_common_noise = 'x'"),
    ],
)  # fmt: skip
def test_bad_group_settings_in_policy_metadata_are_named(
    extra: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        GroupSettings.from_metadata(extra)
    assert GroupSettings.from_metadata({}) is None


def test_group_advantages_use_each_branch_segment_return() -> None:
    # Two branches of 2 steps from one point, rewards (1, 1) and (0, 3), gamma 0.5.
    rewards = np.array([1.0, 1.0, 0.0, 3.0])
    dones = np.array([False, True, False, True])
    returns = return_to_go(rewards, dones, 0.5)
    assert np.allclose(returns, [1.5, 1.0, 1.5, 3.0])
    got = same_state_group_advantages(
        returns, dones, np.zeros(4, np.int64), credit="all_steps", scale="none", delta=1e-8
    )
    assert np.allclose(got, [0.0, -1.0, 0.0, 1.0])
