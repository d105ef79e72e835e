"""The arm reach task (cgrpo_ros/Arm7Reach-v0, the stand-in for FrankaReach) learned in-process.

Budget: CI gives this test about 90 s of CPU on a busy 2-core machine: 40 iterations x 2
policies x 1000 steps (80,000 env steps). Untrained policies start at the arm's home pose (the
env's rest action). Measured here (seeded, deterministic; machine shared with a benchmark):
training return -28 -> -20, end-of-episode fingertip distance 0.232 m (untrained) -> 0.168 m,
success rate 0.1 over the 10 evaluation episodes (5 cm threshold). That is NOT the "stated
success rate" issue 7 asks for: see docs/results.md "Manipulation" for why (absolute joint
targets through the rate limiter filter the exploration noise; Monte Carlo returns) and what
larger budgets reach. What this test asserts is learning to reach towards the goal: the
training return rises and the deterministic policy ends its episodes closer to the goal.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.policy_artifact import OnnxPolicy
from cgrpo_ros.training import TaskSpec, TrainingSession, make_env, train_single_process

ENV_ID = "cgrpo_ros/Arm7Reach-v0"
ITERATIONS, STEPS = 40, 1000  # per policy per iteration: 10 episodes of 100 steps
EVAL_EPISODES = 10


def config() -> CGRPOConfig:
    # Policies start at home, so exploration is around the workspace's middle: std e^-1 =
    # 0.37 rad and a larger step size than the locomotion defaults (tried at 60 iterations:
    # std 0.37 / lr 1e-3 ended at 0.20 m; std 0.14 and 0.05 rad learned slower).
    return CGRPOConfig.for_variant(
        "full", num_policies=2, num_groups=2, seed=0, init_log_std=-1.0, learning_rate=3e-3
    )


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
    assert last > 0.8 * first  # returns are negative: at least 20 % less distance summed
    assert trained < 0.8 * untrained
