"""Cost per environment step of stable-baselines3 SAC or TD3 at its defaults, on one thread.

SAC takes one gradient step (a 256x256 actor and two critics) per env step once
`learning_starts` steps are collected, TD3 one critic step per env step and an actor step every
second; this times `--steps` steps after that point, the regime a whole run is spent in
(docs/benchmarks.md, "cgrpo bench baselines").

    .venv/bin/python benchmarks/sac_cost.py --task HalfCheetah-v5 --steps 3000 [--algo td3]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=3000, help="steps timed after learning_starts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algo", choices=("sac", "td3"), default="sac")
    args = parser.parse_args()

    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback

    from cgrpo_ros.cli.bench import silent_sb3_logger
    from cgrpo_ros.tasks import make_env

    torch.set_num_threads(1)
    algo = {"sac": SAC, "td3": TD3}[args.algo]
    model = algo("MlpPolicy", make_env(args.task), seed=args.seed, device="cpu", verbose=0)
    start = model.learning_starts
    marks: dict[str, float] = {}

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == start:
                marks["t0"] = time.perf_counter()
            return True

    model.set_logger(silent_sb3_logger())
    model.learn(total_timesteps=start + args.steps, callback=Clock())
    elapsed = time.perf_counter() - marks["t0"]
    print(
        f"{args.task}: {args.algo.upper()} (SB3 defaults, learning_starts={start}), "
        f"{args.steps} steps after learning_starts in {elapsed:.1f} s: "
        f"{elapsed / args.steps * 1e3:.1f} ms per env step, "
        f"{args.steps / elapsed:.0f} env steps/s, one thread"
    )


if __name__ == "__main__":
    main()
