"""The arm reach task (cgrpo_ros/Arm7Reach-v0, the stand-in for FrankaReach) learned in-process.

Budget: 40 iterations x 2 policies x 1000 steps (80,000 env steps), about 100 s on a quiet
2-core machine. The task as the robot config sets it up: fingertip-step actions turned into
joint targets by damped least squares, progress reward (cgrpo_ros/robot/reach_task.py). Stated
success rate: at least 0.8 of 10 evaluation goals within 5 cm after the 2 s episode, with the
deterministic policy. Measured here (seeded, deterministic; a quiet machine, 104 s): training
return -1.4 -> 7.1, end-of-episode distance 0.217 m (untrained) -> 0.012 m, success rate 1.00.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.policy_artifact import OnnxPolicy
from cgrpo_ros.session import TrainingSession, train_single_process
from cgrpo_ros.tasks import TaskSpec, make_env

ENV_ID = "cgrpo_ros/Arm7Reach-v0"
ITERATIONS, STEPS = 40, 1000  # per policy per iteration: 10 episodes of 100 steps
EVAL_EPISODES = 10


STATED_SUCCESS_RATE = 0.8


def config() -> CGRPOConfig:
    # The locomotion defaults (std 1, lr 3e-4): actions are in [-1, 1] like theirs.
    return CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, seed=0)


def final_distances(policy: OnnxPolicy) -> tuple[float, float]:
    """Mean fingertip-goal distance at the end of the episode, and the success rate."""
    env = make_env(ENV_ID)
    distances, successes = [], []
    for episode in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=10_000 + episode)
        done, info = False, dict[str, Any]()
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.deterministic_action(obs))
            done = terminated or truncated
        distances.append(info["distance"])
        successes.append(info["is_success"])
    env.close()
    return float(np.mean(distances)), float(np.mean(successes))


def test_cgrpo_learns_to_reach_with_the_arm(tmp_path: Path) -> None:
    untrained_session = TrainingSession(
        task=TaskSpec.from_env(ENV_ID), config=config(), run_dir=tmp_path / "untrained",
        tensorboard=False,
    )  # fmt: skip
    untrained, _ = final_distances(OnnxPolicy(untrained_session.policy_artifact(0)))
    untrained_session.logger.close()

    summary: dict[str, Any] = train_single_process(
        env_id=ENV_ID, config=config(), iterations=ITERATIONS, steps_per_iteration=STEPS,
        run_dir=tmp_path / "run", checkpoint_every=ITERATIONS,
    )  # fmt: skip
    assert summary["env_steps"] == ITERATIONS * STEPS * 2
    # Success rate is logged beside return (the env reports info["is_success"]).
    assert 0.0 <= summary["success_rate"] <= 1.0

    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    first = np.mean([float(r["mean_episode_return"]) for r in rows[:2]])
    last = np.mean([float(r["mean_episode_return"]) for r in rows[-4:]])  # last 2 iterations
    finals = [x if x is not None else -np.inf for x in summary["final_return_per_policy"]]
    trained, success = final_distances(
        OnnxPolicy.from_file(tmp_path / "run" / f"policy_{int(np.argmax(finals))}.onnx")
    )
    print(
        f"training return {first:.1f} -> {last:.1f}; final distance {untrained:.3f} -> "
        f"{trained:.3f} m; success rate {success:.2f}"
    )
    assert last > first
    assert trained < 0.5 * untrained
    assert success >= STATED_SUCCESS_RATE
