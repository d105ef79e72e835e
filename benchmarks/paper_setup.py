"""Issue 2's benchmark: the paper's section 7 set-up on HalfCheetah-v5, both variants, seeds.

2 policies, 2 groups, 500 iterations x 2048 steps per policy (2,048,000 environment steps in
all per run), variants full and simple, seeds 0..2 by default. Each run writes its own
directory under benchmarks/results/paper_setup/ and resumes from its checkpoint when
interrupted; `--report` collects the finished runs into docs/benchmarks.md's table.

    .venv/bin/python benchmarks/paper_setup.py --jobs 2          # run (resumable)
    .venv/bin/python benchmarks/paper_setup.py --report          # print the table
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "paper_setup"
PAPER = {"full": 60.0, "simple": 30.0}  # section 7.3, HalfCheetah-v4, after 500 iterations


def run_dir(variant: str, seed: int) -> Path:
    return RESULTS / f"HalfCheetah-v5-{variant}-seed{seed}"


def run_one(variant: str, seed: int, iterations: int, steps: int) -> str:
    directory = run_dir(variant, seed)
    summary = directory / "summary.json"
    if summary.exists() and json.loads(summary.read_text())["iterations"] >= iterations:
        return f"{directory.name}: done already"
    resume = (directory / "checkpoints" / "latest.ckpt").exists()
    argv = [
        sys.executable, "-m", "cgrpo_ros.cli", "train", "--env", "HalfCheetah-v5",
        "--variant", variant, "--policies", "2", "--groups", "2",
        "--iterations", str(iterations), "--steps-per-iteration", str(steps),
        "--seed", str(seed), "--run-dir", str(directory), "--checkpoint-every", "10",
    ]  # fmt: skip
    if resume:
        argv.append("--resume")
    elif directory.exists():
        # A run that died before its first checkpoint: nothing to keep.
        for path in sorted(directory.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    log = directory.parent / f"{directory.name}.log"
    directory.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        code = subprocess.call(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    return f"{directory.name}: exit {code}"


def clustering_share(directory: Path) -> tuple[float, float]:
    """Share of wall time spent in k-means and in DBSCAN, from metrics.csv."""
    kmeans = dbscan = 0.0
    seen = set()
    with (directory / "metrics.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["iteration"] in seen:
                continue
            seen.add(row["iteration"])
            kmeans += float(row["kmeans_seconds"])
            dbscan += float(row["dbscan_seconds"])
    wall = json.loads((directory / "summary.json").read_text())["wall_s"]
    return kmeans / wall, dbscan / wall


def report() -> str:
    lines = [
        "| variant | seed | iterations | env steps | final return (policy 1, 2) | best | "
        "env steps/s | k-means share | DBSCAN share | paper |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    finals: dict[str, list[float]] = {"full": [], "simple": []}
    for summary_path in sorted(RESULTS.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        variant = summary["variant"]
        seed = summary["config"]["seed"]
        final = summary["final_return_per_policy"]
        km, db = clustering_share(summary_path.parent)
        finals[variant].append(max(x for x in final if x is not None))
        lines.append(
            f"| {variant} | {seed} | {summary['iterations']} | {summary['env_steps']:,} | "
            f"{', '.join(f'{x:.0f}' for x in final)} | {summary['best_return']:.0f} | "
            f"{summary['env_steps_per_s']:.0f} | {km:.1%} | {db:.1%} | ~{PAPER[variant]:.0f} |"
        )
    for variant, values in finals.items():
        if values:
            spread = statistics.pstdev(values) if len(values) > 1 else 0.0
            lines.append(
                f"\n{variant}: best-policy final return over {len(values)} seeds: "
                f"mean {statistics.mean(values):.0f}, std {spread:.0f}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["full", "simple"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--steps-per-iteration", type=int, default=2048)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one core each)")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        print(report())
        return 0
    jobs = [(v, s) for s in args.seeds for v in args.variants]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(run_one, v, s, args.iterations, args.steps_per_iteration) for v, s in jobs
        ]
        for future in futures:
            print(future.result(), flush=True)
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
