"""Env steps/s of CGRPO training through the ROS 2 node stack vs the single-process trainer.

    .venv/bin/python benchmarks/stack_throughput.py --iterations 8 --steps 2048

Runs, on the same machine and in one invocation: `train_single_process` (in a subprocess),
then `cgrpo train-sim` with 1 and with 2 rollout workers (learner + workers as separate
processes over DDS, localhost discovery, a private domain). Same task, config, seed,
iterations and steps. Reports two rates per run from the run's own metrics.csv/summary.json:
  total   env_steps / wall_s of the whole session (ROS: includes waiting for the workers to
          start, import torch/MuJoCo and discover the learner)
  steady  steps between the first and the last iteration / time between them
Each finished run is written to <out>/<name>.json, and a rerun skips runs already there.
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

REPO = Path(__file__).resolve().parents[1]
TRAIN_SIM = (
    "import argparse, sys\n"
    "from cgrpo_ros.stack import add_train_sim_parser\n"
    "p = argparse.ArgumentParser(); sub = p.add_subparsers(dest='command')\n"
    "add_train_sim_parser(sub); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
)
SINGLE = (
    "import sys\nfrom pathlib import Path\n"
    "from cgrpo_ros.core.config import CGRPOConfig\n"
    "from cgrpo_ros.training import train_single_process\n"
    "env, it, steps, seed, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), "
    "int(sys.argv[4]), Path(sys.argv[5])\n"
    "cfg = CGRPOConfig.for_variant('full', num_policies=2, num_groups=2, seed=seed)\n"
    "train_single_process(env_id=env, config=cfg, iterations=it, steps_per_iteration=steps, "
    "run_dir=run, checkpoint_every=10**6)\n"
)


def rates(run_dir: Path) -> dict[str, float]:
    summary = json.loads((run_dir / "summary.json").read_text())
    with (run_dir / "metrics.csv").open() as f:
        rows = {int(r["iteration"]): r for r in csv.DictReader(f)}
    first, last = rows[min(rows)], rows[max(rows)]
    steady = (int(last["env_steps"]) - int(first["env_steps"])) / max(
        float(last["wall_s"]) - float(first["wall_s"]), 1e-9
    )
    return {
        "env_steps": summary["env_steps"],
        "wall_s": summary["wall_s"],
        "total_steps_per_s": summary["env_steps_per_s"],
        "steady_steps_per_s": round(steady, 1),
    }


def run(name: str, argv: list[str], run_dir: Path, out: Path) -> dict[str, float]:
    result_file = out / f"{name}.json"
    if result_file.exists():
        return dict(json.loads(result_file.read_text()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=out, check=True, stdout=subprocess.DEVNULL)
    result = {**rates(run_dir), "process_wall_s": round(time.perf_counter() - start, 1)}
    result_file.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_stack"))
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    common = [str(args.iterations), str(args.steps), str(args.seed)]
    results = {
        "single_process": run(
            "single_process",
            [sys.executable, "-c", SINGLE, args.env, *common, str(out / "single")],
            out / "single",
            out,
        )
    }
    for workers in (1, 2):
        name = f"ros_{workers}_worker"
        run_dir = out / name
        argv = [sys.executable, "-c", TRAIN_SIM, "train-sim", "--env", args.env,
                "--iterations", str(args.iterations), "--steps-per-iteration", str(args.steps),
                "--seed", str(args.seed), "--workers", str(workers), "--run-dir", str(run_dir),
                "--checkpoint-every", str(10**6)]  # fmt: skip
        results[name] = run(name, argv, run_dir, out)
    base = results["single_process"]
    print(f"{args.env}: 2 policies x {args.steps} steps x {args.iterations} iterations")
    print(f"{'run':<16}{'total steps/s':>15}{'ratio':>8}{'steady steps/s':>16}{'ratio':>8}")
    for name, r in results.items():
        total = r["total_steps_per_s"] / base["total_steps_per_s"]
        steady = r["steady_steps_per_s"] / base["steady_steps_per_s"]
        print(
            f"{name:<16}{r['total_steps_per_s']:>15.0f}{total:>8.2f}"
            f"{r['steady_steps_per_s']:>16.0f}{steady:>8.2f}"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
