"""Per-step costs behind issue 14's two bit-identical speed-ups, old way against new way.

    .venv/bin/python benchmarks/step_costs.py [--repeats 20000]

- sampling one action: `OnnxPolicy.sample` (one observation, no reshapes, std computed once)
  against the formula through `action_mean` (what `sample` did before);
- gradient clipping of the two policies of a gradient step: `clip_grad_norms` (one
  `_foreach_norm` pass) against `torch.nn.utils.clip_grad_norm_` once per policy;
- collection, policy + HalfCheetah-v5 env, one core: `RolloutCollector.collect` with each way
  of sampling.
One torch thread, microseconds per call (best of 3 rounds); the machine's load is printed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from cgrpo_ros.core.cgrpo import clip_grad_norms
from cgrpo_ros.core.onnx_export import export_policy_onnx
from cgrpo_ros.core.policy import GaussianPolicy
from cgrpo_ros.core.policy_artifact import OnnxPolicy
from cgrpo_ros.core.rollout import RolloutCollector
from cgrpo_ros.tasks import TaskSpec, make_env


def best_us(call: Callable[[], object], repeats: int) -> float:
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        rounds.append((time.perf_counter() - start) / repeats * 1e6)
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = TaskSpec.from_env("HalfCheetah-v5")
    policies = [GaussianPolicy(task.obs_dim, task.act_dim, (64, 64), 0.0, None) for _ in range(2)]
    runner = OnnxPolicy(
        export_policy_onnx(policies[0], task.policy_metadata(0, 1, config_hash="", extra={}))
    )
    obs = np.random.default_rng(0).standard_normal(task.obs_dim).astype(np.float32)
    rng = np.random.default_rng(0)

    def formula() -> np.ndarray:  # what OnnxPolicy.sample computed before issue 14
        mean = runner.action_mean(obs)
        noise = rng.standard_normal(mean.shape).astype(np.float32)
        return (mean + np.exp(runner.log_std) * noise).astype(np.float32)

    print(f"load {os.getloadavg()[0]:.2f}, torch threads {torch.get_num_threads()}")
    old = best_us(formula, args.repeats)
    new = best_us(lambda: runner.sample(obs, rng), args.repeats)
    print(f"sample one action      before {old:7.1f} us   now {new:7.1f} us")

    for policy in policies:
        for p in policy.parameters():
            p.grad = torch.randn_like(p)

    def per_policy() -> None:
        for policy in policies:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)

    old = best_us(per_policy, args.repeats // 4)
    new = best_us(lambda: clip_grad_norms(policies, 0.5), args.repeats // 4)
    print(f"clip 2 policies' grads before {old:7.1f} us   now {new:7.1f} us")

    collector = RolloutCollector(make_env("HalfCheetah-v5"), seed=0)

    def collect_rate(act: Callable[[np.ndarray], np.ndarray]) -> float:
        collector.collect(act, 1000)
        start = time.perf_counter()
        collector.collect(act, 8192)
        return 8192 / (time.perf_counter() - start)

    def formula_at(o: np.ndarray) -> np.ndarray:
        mean = runner.action_mean(o)
        noise = rng.standard_normal(mean.shape).astype(np.float32)
        return (mean + np.exp(runner.log_std) * noise).astype(np.float32)

    old = collect_rate(formula_at)
    new = collect_rate(partial(runner.sample, rng=rng))
    print(f"collection (one core)  before {old:7.0f} steps/s   now {new:7.0f} steps/s")


if __name__ == "__main__":
    main()
