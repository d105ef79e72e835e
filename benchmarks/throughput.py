"""Training throughput on one machine, in one run (issue 14): where the env steps/s go.

    .venv/bin/python benchmarks/throughput.py --iterations 30 --out /tmp/bench_throughput \
        --json docs/throughput.json

Measures, one after the other on the same machine:
  raw env      HalfCheetah-v5 stepped with random actions, one core, no policy
  train        `cgrpo train` (single process: collection through the ONNX artifact + update)
  train-sim    `cgrpo train-sim` with 1 and with 2 rollout workers (learner + worker
               processes over DDS, localhost discovery, a private domain)
with the paper's set-up (CGRPO-full, 2 policies, 2 groups, 2048 steps per policy per
iteration, seed 0). For each training run it prints env steps/s over the whole run (start-up
included; what "1M steps in N minutes" means) and in steady state (first to last iteration),
and the share of the run's wall time in:
  collection   the workers' time inside the rollout (train-sim: the slower worker's, as the
               workers collect in parallel); single process: the trainer's wait for its batches
  update       the gradient steps (Algorithm 1 lines 27-31)
  k-means      policy clustering (Eq. 4-5)
  DBSCAN       state clustering (Eq. 6-7)
  transfer     the learner's wait for batches beyond the collection itself, counted from
               the export of the first policy: ONNX export, DDS hops of policy and trajectory
               frames, frame encoding/decoding and signing, ONNX session creation in the
               workers (train-sim only)
  start-up     the first iteration's extra wait: worker processes importing torch/MuJoCo and
               discovering the learner (train-sim only)
  other        the rest of the learner's loop: ONNX export, features, logging, checkpoints
All from the runs' own files (metrics.csv `wait_seconds`, `kmeans_seconds`, `dbscan_seconds`,
`update_seconds`; summary.json `wall_s`, `worker_collect_s`). Each finished run is written to
<out>/<name>.json and skipped on a rerun (delete --out to measure again).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RAW_ENV = (
    "import sys, time, numpy as np\n"
    "from cgrpo_ros.tasks import make_env\n"
    "env = make_env(sys.argv[1]); env.reset(seed=0); env.action_space.seed(0)\n"
    "n = int(sys.argv[2]); actions = [env.action_space.sample() for _ in range(1000)]\n"
    "start = time.perf_counter()\n"
    "for t in range(n):\n"
    "    _, _, term, trunc, _ = env.step(actions[t % 1000])\n"
    "    if term or trunc: env.reset()\n"
    "print(n / (time.perf_counter() - start))\n"
)
SHARES = ("collection", "update", "kmeans", "dbscan", "transfer", "startup", "other")


def raw_env_steps_per_s(env_id: str, steps: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", RAW_ENV, env_id, str(steps)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def iteration_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv has one row per policy; the timing columns are per iteration."""
    with (run_dir / "metrics.csv").open() as f:
        rows = {int(r["iteration"]): r for r in csv.DictReader(f)}
    return [rows[i] for i in sorted(rows)]


def analyse(run_dir: Path, ros: bool) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = iteration_rows(run_dir)
    wall = float(summary["wall_s"])
    first, last = rows[0], rows[-1]
    steady = (int(last["env_steps"]) - int(first["env_steps"])) / max(
        float(last["wall_s"]) - float(first["wall_s"]), 1e-9
    )

    def total(key: str, skip_first: bool = False) -> float:
        return sum(float(r[key]) for r in rows[1 if skip_first else 0 :])

    waits = [float(r["wait_seconds"]) for r in rows]
    seconds = {
        "update": total("update_seconds"),
        "kmeans": total("kmeans_seconds"),
        "dbscan": total("dbscan_seconds"),
    }
    if ros:
        # A worker's time inside its rollouts, scaled to the batches the learner used (a
        # worker may collect one batch more while the learner finishes); the workers run in
        # parallel, so the slower one's time is the run's collection time.
        per_policy = int(summary["env_steps"]) / len(summary["final_return_per_policy"])
        collect = [
            w["collect_s"] * min(1.0, per_policy * w["policies"] / w["steps"])
            for w in summary.get("worker_collect_s", {}).values()
            if w.get("collect_s") is not None and w.get("steps")
        ]
        seconds["collection"] = max(collect) if collect else 0.0
        # Collection and transfer taken as even over the iterations; the first iteration's
        # wait beyond them is the start-up. collection + transfer + startup = all waits.
        n = len(waits)
        per_iteration = seconds["collection"] / n
        later_transfer = sum(waits[1:]) - per_iteration * (n - 1)
        seconds["transfer"] = later_transfer * n / max(n - 1, 1)
        seconds["startup"] = waits[0] - per_iteration - seconds["transfer"] / n
    else:
        seconds["collection"] = sum(waits)
        seconds["startup"] = seconds["transfer"] = 0.0
    seconds["other"] = wall - sum(seconds.values())
    return {
        "env_steps": summary["env_steps"],
        "wall_s": wall,
        "steps_per_s": summary["env_steps_per_s"],
        "steady_steps_per_s": round(steady, 1),
        "seconds": {k: round(seconds[k], 2) for k in SHARES},
        "share": {k: round(seconds[k] / wall, 3) for k in SHARES},
        "final_return_per_policy": summary.get("final_return_per_policy"),
    }


def run(name: str, argv: list[str], run_dir: Path, out: Path, ros: bool) -> dict[str, Any]:
    result_file = out / f"{name}.json"
    if result_file.exists():
        return dict(json.loads(result_file.read_text()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=out, check=True, stdout=subprocess.DEVNULL)
    result = {**analyse(run_dir, ros), "process_wall_s": round(time.perf_counter() - start, 1)}
    result_file.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--steps", type=int, default=2048, help="steps per policy per iteration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw-steps", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_throughput"))
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    raw = raw_env_steps_per_s(args.env, args.raw_steps)
    shape = ["--env", args.env, "--iterations", str(args.iterations),
             "--steps-per-iteration", str(args.steps), "--seed", str(args.seed),
             "--checkpoint-every", str(10**6)]  # fmt: skip
    cli = [sys.executable, "-m", "cgrpo_ros.cli"]
    results = {
        "train": run(
            "train", [*cli, "train", *shape, "--run-dir", str(out / "train")], out / "train",
            out, ros=False,
        )
    }  # fmt: skip
    for workers in (1, 2):
        name = f"train_sim_{workers}_worker"
        argv = [*cli, "train-sim", *shape, "--workers", str(workers), "--run-dir", str(out / name)]
        results[name] = run(name, argv, out / name, out, ros=True)

    print(
        f"{args.env}, CGRPO-full, 2 policies x {args.steps} steps x {args.iterations} iterations, "
        f"load {os.getloadavg()[0]:.2f}\nraw env (random actions, one core): {raw:,.0f} steps/s"
    )
    header = "".join(f"{k:>11}" for k in SHARES)
    print(f"{'run':<22}{'steps/s':>9}{'steady':>9}{header}")
    for name, r in results.items():
        shares = "".join(f"{100 * r['share'][k]:>10.1f}%" for k in SHARES)
        print(f"{name:<22}{r['steps_per_s']:>9,.0f}{r['steady_steps_per_s']:>9,.0f}{shares}")
    best_sim = max(
        (n for n in results if n.startswith("train_sim")), key=lambda n: results[n]["steps_per_s"]
    )
    summary = {
        "task": args.env,
        "setup": f"CGRPO-full, 2 policies, 2 groups, {args.steps} steps/policy/iteration, "
        f"{args.iterations} iterations, seed {args.seed}",
        "raw_env_steps_per_s": round(raw, 1),
        "train_steps_per_s": results["train"]["steps_per_s"],
        "train_sim_steps_per_s": results[best_sim]["steps_per_s"],
        "train_sim_best_workers": int(best_sim.split("_")[2]),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "runs": results,
        "command": "python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
