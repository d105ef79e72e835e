"""Issue 7's benchmark: success rate of CGRPO-Full and SB3 PPO on the manipulation tasks.

FetchReach-v4 (gymnasium-robotics, flattened goal observation) and cgrpo_ros/Arm7Reach-v0
(our 7-joint arm, the stand-in for the paper's FrankaReach), same step budget and seeds for
both methods, through the comparison harness `cgrpo_ros.cli.bench` (one JSON file per run under
benchmarks/results/manipulation/, so an interrupted sweep resumes). Success rate = the
fraction of `--eval-episodes` deterministic episodes that end with info["is_success"].

    .venv/bin/python benchmarks/manipulation.py --budget 500000 --seeds 0 1 2 --jobs 2
    .venv/bin/python benchmarks/manipulation.py --report        # the table, finished runs only
    .venv/bin/python benchmarks/manipulation.py --quick         # tiny budget: proves it runs
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cgrpo_ros.cli.bench import RunSpec, run_one
from cgrpo_ros.cli.bench_report import load_results

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("FetchReach-v4", "cgrpo_ros/Arm7Reach-v0")
METHODS = ("cgrpo-full", "ppo")


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: success rate and return, mean ± std over seeds, per task, method and budget."""
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        grouped[(r["task"], r["method"], r["budget_steps"])].append(r)
    lines = [
        "| task | method | budget (env steps) | seeds | success rate | final return | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, method, budget), runs in sorted(grouped.items()):
        rates = [r["success_rate"] for r in runs if r.get("success_rate") is not None]
        returns = [r["final_return"] for r in runs]
        lines.append(
            f"| {task} | {method} | {budget:,} | {sorted(r['seed'] for r in runs)} | "
            f"{_mean_std(rates, 2)} | {_mean_std(returns, 1)} | "
            f"{statistics.mean(r['wall_s'] for r in runs):.0f} |"
        )
    return "\n".join(lines)


def _mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "n/a"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=500_000, help="env steps per run")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--steps-per-iteration", type=int, default=2048, help="CGRPO, per policy")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one core each)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/manipulation")
    parser.add_argument("--report", action="store_true", help="only print the table")
    parser.add_argument(
        "--quick", action="store_true", help="4,096 steps, seed 0, 5 eval episodes (smoke test)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.seeds, args.eval_episodes, args.steps_per_iteration = 4096, [0], 5, 1024
        args.out = args.out.with_name(args.out.name + "_quick")
    if not args.report:
        # Perturbed-dynamics episodes are not the point here; bench still runs a few (1/10).
        specs = [
            RunSpec(m, t, s, args.budget, args.eval_episodes,
                    max(1, args.eval_episodes // 10), args.steps_per_iteration)
            for t in args.tasks for s in args.seeds for m in args.methods
        ]  # fmt: skip
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for path in pool.map(run_one, specs, [args.out] * len(specs)):
                print(f"done: {path}", flush=True)
    print(table(load_results(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
