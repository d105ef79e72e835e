"""Goal-conditioned tasks (issue 7): the flattened layout, its metadata round trip through the
ONNX artifact, and success rate beside return in training logs and `cgrpo eval`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cgrpo_ros.cli import main as cgrpo_main
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.policy_artifact import OnnxPolicy
from cgrpo_ros.core.rollout import RolloutCollector, evaluate, evaluate_with_success
from cgrpo_ros.session import TrainingSession, train_single_process
from cgrpo_ros.tasks import (
    GOAL_OBS_LAYOUT,
    GOAL_OBS_LAYOUT_VERSION,
    FlattenGoalObservation,
    TaskSpec,
    make_env,
)

pytest.importorskip("gymnasium_robotics")
FETCH = "FetchReach-v4"
# FetchReach-v4: observation 10 (gripper pos, finger state, velocities), goals 3 + 3.
FETCH_NAMES = (
    [f"observation/{i}" for i in range(10)]
    + [f"achieved_goal/{i}" for i in range(3)]
    + [f"desired_goal/{i}" for i in range(3)]
)


def small_config(**overrides: object) -> CGRPOConfig:
    # One k-means init and two epochs: these tests check plumbing, not learning.
    base = dict(num_policies=2, num_groups=2, seed=0, epochs=2, kmeans_n_init=1)
    return CGRPOConfig.for_variant("full", **{**base, **overrides})


def test_fetch_reach_is_flattened_in_the_documented_order() -> None:
    env = make_env(FETCH)
    try:
        assert isinstance(env, FlattenGoalObservation)
        assert env.observation_names() == FETCH_NAMES
        assert env.observation_space.shape == (16,)
        assert env.observation_space.dtype == np.float32
        obs, _ = env.reset(seed=3)
        raw = env.unwrapped._get_obs()  # type: ignore[attr-defined]
        want = np.concatenate([raw["observation"], raw["achieved_goal"], raw["desired_goal"]])
        np.testing.assert_allclose(obs, want.astype(np.float32))
        assert obs.dtype == np.float32
        _, _, _, _, info = env.step(np.zeros(4, dtype=np.float32))
        assert "is_success" in info  # passed through from the task
    finally:
        env.close()


def test_task_spec_reads_names_through_wrappers() -> None:
    fetch = TaskSpec.from_env(FETCH)
    assert fetch.obs_names == FETCH_NAMES
    assert fetch.action_names == [f"act/{i}" for i in range(4)]
    assert (fetch.obs_layout, fetch.obs_layout_version) == (
        GOAL_OBS_LAYOUT,
        GOAL_OBS_LAYOUT_VERSION,
    )
    # The arm's names still come from the unwrapped env below gym.make's wrappers.
    arm = TaskSpec.from_env("cgrpo_ros/Arm7Reach-v0")
    assert arm.obs_names[0] == "joint_pos/joint1" and arm.obs_names[-1] == "goal_offset/2"
    assert arm.action_names[-1] == "fingertip_delta/z"
    assert (arm.obs_layout, arm.obs_layout_version, arm.action_mode) == ("", 2, "fingertip_delta")
    assert fetch.action_mode == "joint_position"  # the default: actions are passed on as they are
    assert arm.action_settings == {"fingertip_step_m": "0.04"} and fetch.action_settings == {}
    assert arm.metadata_extra() == {"fingertip_step_m": "0.04"}
    assert fetch.metadata_extra() == {"obs_layout": GOAL_OBS_LAYOUT}


def test_onnx_artifact_carries_the_goal_layout(tmp_path: Path) -> None:
    session = TrainingSession(
        task=TaskSpec.from_env(FETCH),
        config=small_config(),
        run_dir=tmp_path / "run",
        tensorboard=False,
    )
    policy = OnnxPolicy(session.policy_artifact(1))
    meta = policy.metadata
    assert meta.obs_names == FETCH_NAMES and meta.obs_dim == 16 and meta.act_dim == 4
    assert meta.obs_layout_version == GOAL_OBS_LAYOUT_VERSION
    assert meta.extra["obs_layout"] == GOAL_OBS_LAYOUT
    assert meta.task == FETCH and meta.policy_id == 1
    props = meta.to_props()
    assert props["cgrpo.obs_layout_version"] == str(GOAL_OBS_LAYOUT_VERSION)
    assert json.loads(props["cgrpo.obs_names"]) == FETCH_NAMES
    session.logger.close()


def test_collector_reports_success_only_for_tasks_that_do() -> None:
    fetch = RolloutCollector(make_env(FETCH), seed=0)
    zero = np.zeros(4, dtype=np.float32)
    batch = fetch.collect(lambda obs: zero, 120)  # 50-step episodes: two end in this batch
    assert fetch.episode_successes is not None
    assert len(fetch.episode_successes) == len(batch.episode_returns) == 2
    assert all(isinstance(s, bool) for s in fetch.episode_successes)
    pendulum = RolloutCollector(make_env("Pendulum-v1"), seed=0)
    pendulum.collect(lambda obs: np.zeros(1, dtype=np.float32), 250)
    assert pendulum.episode_successes is None


def test_rollout_worker_gym_backend_returns_the_success_flags() -> None:
    """The ROS worker's gymnasium backend hands the collector's flags to the trajectory frame."""
    from cgrpo_ros.nodes.rollout_worker import GymBackend
    from cgrpo_ros.wire.trajectory import decode_trajectory, encode_trajectory

    arm = GymBackend("cgrpo_ros/Arm7Reach-v0", seed=0, num_policies=2)
    pendulum = GymBackend("Pendulum-v1", seed=0, num_policies=1)
    try:
        # 100-step episodes: two end in 250 steps.
        batch, successes = arm.collect(1, 0, lambda obs: np.zeros(3, np.float32), 250)
        assert successes is not None and len(successes) == len(batch.episode_returns) == 2
        meta = {"policy_id": 1, "policy_version": 0, "worker_id": "w", "seq": 0}
        frame = encode_trajectory(
            batch, **meta, task="cgrpo_ros/Arm7Reach-v0", episode_successes=successes
        )
        assert decode_trajectory(frame).episode_successes == successes
        _, none = pendulum.collect(0, 0, lambda obs: np.zeros(1, np.float32), 250)
        assert none is None
    finally:
        arm.close()
        pendulum.close()


def test_evaluate_with_success_on_the_arm() -> None:
    env = make_env("cgrpo_ros/Arm7Reach-v0")
    hold = np.zeros(3, np.float32)  # no fingertip step: the arm stays at home
    returns, successes = evaluate_with_success(env, lambda obs: hold, 2, seed=5)
    assert successes is not None and successes.shape == (2,) and successes.dtype == np.bool_
    np.testing.assert_allclose(returns, evaluate(env, lambda obs: hold, 2, seed=5))
    pendulum = make_env("Pendulum-v1")
    assert evaluate_with_success(pendulum, lambda obs: np.zeros(1, np.float32), 1, 0)[1] is None


def test_fetch_training_logs_success_rate_and_eval_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "fetch"
    summary = train_single_process(
        env_id=FETCH, config=small_config(), iterations=2, steps_per_iteration=100,
        run_dir=run_dir,
    )  # fmt: skip
    rates = summary["final_success_rate_per_policy"]
    assert len(rates) == 2 and all(r is not None and 0.0 <= r <= 1.0 for r in rates)
    assert 0.0 <= summary["success_rate"] <= 1.0 and 0.0 <= summary["best_success_rate"] <= 1.0
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 and all(0.0 <= float(r["success_rate"]) <= 1.0 for r in rows)

    assert cgrpo_main(["eval", str(run_dir / "policy_0.onnx"), "--episodes", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == FETCH and 0.0 <= result["success_rate"] <= 1.0


def test_tasks_without_success_keep_the_column_empty(tmp_path: Path) -> None:
    summary = train_single_process(
        env_id="Pendulum-v1", config=small_config(num_policies=1, num_groups=1),
        iterations=1, steps_per_iteration=200, run_dir=tmp_path / "pendulum",
    )  # fmt: skip
    assert "success_rate" not in summary
    with (tmp_path / "pendulum" / "metrics.csv").open() as handle:
        assert [r["success_rate"] for r in csv.DictReader(handle)] == [""]


def test_resume_of_a_run_from_before_the_success_column(tmp_path: Path) -> None:
    run_dir = tmp_path / "old"
    config = small_config()
    train_single_process(
        env_id=FETCH, config=config, iterations=1, steps_per_iteration=50, run_dir=run_dir,
        checkpoint_every=1,
    )  # fmt: skip
    # Rewrite metrics.csv as an older version wrote it: no success_rate column.
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    fields = [f for f in rows[0] if f != "success_rate"]
    with (run_dir / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    summary = train_single_process(
        env_id=FETCH, config=config, iterations=2, steps_per_iteration=50, run_dir=run_dir,
        resume=True,
    )  # fmt: skip
    with (run_dir / "metrics.csv").open() as handle:
        resumed = list(csv.DictReader(handle))
    assert len(resumed) == 4 and all(None not in r for r in resumed)  # still a valid table
    assert not math.isnan(summary["best_success_rate"])


def test_hand_manipulate_block_flattens_round_trips_and_trains(tmp_path: Path) -> None:
    """HandManipulateBlock-v1 (the paper's in-hand task) in the same layout as FetchReach:
    observation 61 (hand joints, velocities, block pose and velocities), goals 7 + 7 (block
    position and quaternion); the layout reaches the ONNX metadata; one short iteration logs
    success rate beside return."""
    task = "HandManipulateBlock-v1"
    env = make_env(task)
    try:
        obs, _ = env.reset(seed=0)
        raw = env.unwrapped._get_obs()  # type: ignore[attr-defined]
        want = np.concatenate([raw["observation"], raw["achieved_goal"], raw["desired_goal"]])
        np.testing.assert_allclose(obs, want.astype(np.float32))
        _, _, _, _, info = env.step(np.zeros(20, dtype=np.float32))
        assert "is_success" in info
    finally:
        env.close()
    spec = TaskSpec.from_env(task)
    names = (
        [f"observation/{i}" for i in range(61)]
        + [f"achieved_goal/{i}" for i in range(7)]
        + [f"desired_goal/{i}" for i in range(7)]
    )
    assert spec.obs_names == names and spec.act_dim == 20
    summary = train_single_process(
        env_id=task, config=small_config(epochs=1), iterations=1, steps_per_iteration=128,
        run_dir=tmp_path / "run", checkpoint_every=1,
    )  # fmt: skip
    assert summary["env_steps"] == 2 * 128
    meta = OnnxPolicy.from_file(tmp_path / "run" / "policy_0.onnx").metadata
    assert meta.obs_names == names and meta.extra["obs_layout"] == GOAL_OBS_LAYOUT
    assert meta.obs_layout_version == GOAL_OBS_LAYOUT_VERSION and meta.task == task
    # 50-step episodes: 2 end per policy in 128 steps, each with its success flag.
    assert 0.0 <= summary["success_rate"] <= 1.0
