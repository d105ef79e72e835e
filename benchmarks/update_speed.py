"""Seconds per CGRPO update (Algorithm 1 lines 9-33) on fixed HalfCheetah batches.

    .venv/bin/python benchmarks/update_speed.py [--variant full] [--repeats 5] [--threads 1]
        [--autograd]

Collects one batch per policy (2 x 2048 steps, seed 0) once, then times `CGRPO.update` on
copies of the same fresh algorithm state `--repeats` times and prints the fastest and the
median, with the split into k-means, DBSCAN and gradient steps. Used to measure each
speed-up of issue 14 in isolation from collection and DDS (docs/benchmarks.md). `--autograd`
times the gradient by autograd on `_total_loss` instead of `eq12_gradients` (the hand-written
gradient, the default) in the same run, for the before/after of that change.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import numpy as np
import torch

from cgrpo_ros.core.cgrpo import CGRPO
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.rollout import RolloutCollector
from cgrpo_ros.tasks import make_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["full", "simple"], default="full")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the trainer uses 1)")
    parser.add_argument(
        "--autograd", action="store_true", help="also time the autograd gradient (before)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = CGRPOConfig.for_variant(args.variant, num_policies=2, num_groups=2, seed=0)
    env = make_env("HalfCheetah-v5")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    algo = CGRPO(config, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    batches = []
    for i, policy in enumerate(algo.policies):
        collector = RolloutCollector(make_env("HalfCheetah-v5"), seed=i)
        noise = rng.standard_normal

        def act(obs: np.ndarray, policy=policy, noise=noise) -> np.ndarray:  # type: ignore[no-untyped-def]
            mean = policy(torch.as_tensor(obs[None])).detach().numpy()[0]
            return (mean + np.exp(policy.log_std.detach().numpy()) * noise(act_dim)).astype(
                np.float32
            )

        batches.append(collector.collect(act, args.steps))
    for analytic in [False, True] if args.autograd else [True]:
        timings = []
        for _ in range(args.repeats):
            fresh = copy.deepcopy(algo)
            fresh.analytic_gradients = analytic
            started = time.perf_counter()
            metrics = fresh.update(batches)
            total = time.perf_counter() - started
            timings.append(
                (total, metrics.kmeans_seconds, metrics.dbscan_seconds, metrics.update_seconds)
            )
        best = min(timings)
        print(
            f"variant={args.variant} gradient={'by hand' if analytic else 'autograd'} "
            f"threads={torch.get_num_threads()} steps={args.steps}x2 "
            f"load={os.getloadavg()[0]:.2f}\n"
            f"update s: best {best[0]:.3f} median {statistics.median(t[0] for t in timings):.3f} "
            f"(best run: k-means {best[1]:.3f}, DBSCAN {best[2]:.3f}, "
            f"gradient steps {best[3]:.3f})"
        )


if __name__ == "__main__":
    main()
