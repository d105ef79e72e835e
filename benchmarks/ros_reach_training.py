"""Train Arm7Reach end to end through ROS and score it by success rate (issue 7).

    .venv/bin/python benchmarks/ros_reach_training.py --iterations 40 --steps 1000
    # -> benchmarks/results/ros_reach/seed0-40x1000/ (run dir) and seed0-40x1000.json

The nodes `train_sim_robot.launch.py` starts, each its own process on an isolated DDS domain
(localhost only), with config/train_sim_robot.yaml: the `sim_bridge` node (lock-step MuJoCo
arm), the learner, and one rollout worker with the `ros_robot` backend, which sees the arm only
through `/joint_states`, `/<controller>/commands` and `/sim_bridge/reset`, exactly as it would
see a real arm. (`ros2 launch` is not installed here, so this script starts the three
processes itself, with the parameters file the launch file passes.) Only iterations, steps per
iteration and the run directory are overridden, to the budget of the in-process CI test
(test/unit/test_arm_reach_learning.py: 40 x 1000 steps per policy, 2 policies).

Then the policy with the best final training return is scored in-process by success rate
(deterministic actions, the goals `cgrpo eval --seed 10000` uses), the same measure as the CI
test. All processes are always stopped (SIGINT, then SIGKILL).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT),) if p not in sys.path]

PARAMS_FILE = ROOT / "config" / "train_sim_robot.yaml"
RESULTS_DIR = ROOT / "benchmarks" / "results" / "ros_reach"
ENV_ID = "cgrpo_ros/Arm7Reach-v0"


def node_argv(module: str, name: str, params: dict[str, Any]) -> list[str]:
    from cgrpo_ros.testing.ros_processes import node_argv as shared_node_argv

    return shared_node_argv(PARAMS_FILE, module, name, params)


def train_through_ros(run_dir: Path, iterations: int, steps: int, timeout_s: float) -> float:
    """Runs sim_bridge + learner + worker until the learner finishes; returns wall seconds."""
    from cgrpo_ros.testing.ros_processes import (
        isolated_ros_env,
        process_output,
        start_node_process,
        stop_process,
    )

    env = isolated_ros_env()
    learner_params = {"iterations": iterations, "steps_per_iteration": steps,
                      "run_dir": str(run_dir), "checkpoint_every": iterations}  # fmt: skip
    start = time.monotonic()
    procs = [
        start_node_process(node_argv("sim_bridge.node", "sim_bridge", {}), env),
        start_node_process(node_argv("cgrpo_ros.nodes.learner", "learner", learner_params), env),
        start_node_process(
            node_argv(
                "cgrpo_ros.nodes.rollout_worker", "rollout_worker_0", {"steps_per_iteration": steps}
            ),
            env,
        ),
    ]
    try:
        procs[1].wait(timeout=timeout_s)
        procs[2].wait(timeout=30.0)
    finally:
        codes = [stop_process(p) for p in reversed(procs)]
    wall = time.monotonic() - start
    (run_dir / "nodes.log").write_text("\n".join(process_output(p) for p in procs))
    if any(codes):
        raise RuntimeError(f"a node exited with {codes[::-1]}; see {run_dir / 'nodes.log'}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--steps", type=int, default=1000, help="per policy and iteration")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from cgrpo_ros.core.rollout import evaluate_with_success
    from cgrpo_ros.tasks import make_env

    name = f"seed0-{args.iterations}x{args.steps}"
    run_dir = args.out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    wall = train_through_ros(run_dir, args.iterations, args.steps, args.timeout_s)
    summary = json.loads((run_dir / "summary.json").read_text())
    finals = [x if x is not None else -math.inf for x in summary["final_return_per_policy"]]
    chosen = max(range(len(finals)), key=finals.__getitem__)
    policy = OnnxPolicy.from_file(run_dir / f"policy_{chosen}.onnx")
    env = make_env(ENV_ID)
    returns, successes = evaluate_with_success(
        env, policy.deterministic_action, args.episodes, seed=10_000
    )
    env.close()
    assert successes is not None
    result = {
        "task": ENV_ID,
        "path": "ros_robot worker + sim_bridge node (lockstep) + learner, over DDS",
        "iterations": args.iterations,
        "steps_per_iteration": args.steps,
        "env_steps": summary["env_steps"],
        "wall_s": round(wall, 1),
        "training_success_rate": summary.get("success_rate"),
        "final_return_per_policy": summary["final_return_per_policy"],
        "chosen_policy": chosen,
        "eval_episodes": args.episodes,
        "eval_success_rate": float(successes.mean()),
        "eval_mean_return": float(returns.mean()),
    }
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
