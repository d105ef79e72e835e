"""Score a deployed Arm7Reach policy by success rate: in-process vs deployed over DDS (issue 7).

    .venv/bin/python benchmarks/deploy_reach.py --model runs/<run>/policy_0.onnx --episodes 20
    # -> benchmarks/results/deploy_reach/policy_0.json and a one-line summary

1. In-process: `evaluate_with_success` on `cgrpo_ros/Arm7Reach-v0`, deterministic actions,
   env seeds seed..seed+N-1 (the numbers `cgrpo eval MODEL --episodes N --seed S` prints).
2. Deployed: the `sim_bridge` node (realtime MuJoCo) and the `policy_server` node, each its own
   process on an isolated DDS domain (localhost only), with the node parameters deploy.launch.py
   use_sim:=true gives them: config/deploy.yaml and the launch overrides, built by the same
   code as `cgrpo deploy --use-sim` (cgrpo_ros/cli/deploy.py), so they cannot drift.
   The launch tool (`ros2 launch`) is not installed here, which is why this script starts the
   two processes itself. Two parameters differ, for the episodes to be the in-process env's
   episodes (cgrpo_ros/testing/deploy_episodes.py EPISODE_OVERRIDES: publish_when_disabled
   false, so each episode starts at rest at home; blend_time_s 0, so the policy drives from
   the first step);
   the values the running server really used are read back and written to the JSON.
   Each of the same N goals: disable, wait for the server to brake to rest and go silent,
   /sim_bridge/reset, goal on /policy_server/goal, enable,
   episode_steps control periods. Success = fingertip distance (ReachTask.distance on the
   joint state nearest the episode's end) below reach.success_threshold_m: the in-process
   definition (info["is_success"] on the last step).

Both node processes are always stopped (SIGINT, then SIGKILL), also on errors and Ctrl-C.
Exit code 0; 1 when a node did not shut down cleanly (results are still written); 2 for a bad
argument or model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT),) if p not in sys.path]

RESULTS_DIR = ROOT / "benchmarks" / "results" / "deploy_reach"
# `cgrpo eval`'s default seed: the in-process figures here are the ones it prints.
DEFAULT_SEED = 10_000
DEFAULT_EPISODES = 20


def summary(
    returns: Sequence[float],
    successes: Sequence[bool],
    final_distances: Sequence[float],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "success_rate": float(np.mean(successes)),
        "mean_final_distance_m": float(np.mean(final_distances)),
        "mean_return": float(np.mean(returns)),
        "successes": [bool(s) for s in successes],
        "final_distances_m": [round(float(d), 6) for d in final_distances],
        "returns": [round(float(r), 6) for r in returns],
        **extra,
    }


def evaluate_deployed(
    model: Path, goals: Sequence[Sequence[float]], extra: Sequence[str]
) -> dict[str, Any]:
    """The same goals, deployed: sim_bridge + policy_server processes over DDS."""
    from cgrpo_ros.cli.deploy import default_params_file
    from cgrpo_ros.nodes.policy_server import DECLARED_PARAMETERS
    from cgrpo_ros.robot.config import load_robot_config
    from cgrpo_ros.robot.reach_task import ReachTask
    from cgrpo_ros.testing.deploy_episodes import EPISODE_OVERRIDES, deploy_probe, deployment
    from cgrpo_ros.testing.ros_processes import isolated_ros_env

    robot = load_robot_config()
    task = ReachTask(robot)
    env = isolated_ros_env()
    episodes = []
    with (
        deploy_probe(env, "deploy_reach_probe", robot) as probe,
        deployment(env, model, extra) as deployed,
    ):
        probe.wait_started(deployed)
        try:
            parameters = probe.server_parameters(list(DECLARED_PARAMETERS))
            for i, goal in enumerate(goals):
                episodes.append(probe.run_episode(task, goal))
                e = episodes[-1]
                print(
                    f"  deployed episode {i + 1}/{len(goals)}: final distance "
                    f"{e.final_distance:.4f} m, success {e.success}, "
                    f"return {e.episode_return:.2f}",
                    file=sys.stderr,
                )
            probe.enable(False)
            status = probe.fresh_status()
            if not deployed.running():
                raise RuntimeError("a node exited during the episodes")
        except Exception:
            print(deployed.output(), file=sys.stderr)  # what the nodes said, then the error
            raise
    exit_codes = deployed.exit_codes  # deployment() stopped both on leaving the block
    return summary(
        [e.episode_return for e in episodes],
        [e.success for e in episodes],
        [e.final_distance for e in episodes],
        commands_per_episode=[len(e.commands) for e in episodes],
        policy_server_holds=status["holds"],
        limiting_braking=status.get("limiting", {}).get("braking_count"),
        control_jitter_ms=status.get("control_jitter_ms"),
        deployment={
            "params_file": str(default_params_file()),
            "episode_overrides": dict(EPISODE_OVERRIDES),
            "extra_overrides": list(extra),
            "server_parameters": parameters,
            "ros_domain_id": int(env["ROS_DOMAIN_ID"]),
            "exit_codes": exit_codes,
        },
    )


def versions() -> dict[str, Any]:
    from cgrpo_ros.run_logging import versions as library_versions

    out: dict[str, Any] = dict(library_versions())
    out["ros_distro"] = os.environ.get("ROS_DISTRO")
    out["rmw_implementation"] = os.environ.get("RMW_IMPLEMENTATION")
    try:
        out["git_commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def check_model(model: Path) -> None:
    """Refuse anything but an Arm7Reach ONNX policy, with one readable reason."""
    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from sim_bridge.envs import ENV_ID

    if not model.is_file():
        raise ValueError(f"--model {model}: no such file")
    try:
        task = OnnxPolicy.from_file(model).metadata.task
    except Exception as err:
        raise ValueError(f"--model {model}: not a cgrpo ONNX policy ({err})") from None
    if task != ENV_ID:
        raise ValueError(f"--model {model}: a policy for {task!r}, not {ENV_ID!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="Arm7Reach ONNX policy")
    parser.add_argument("--episodes", type=int, default=DEFAULT_EPISODES)
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="env seed of the first goal (then +1...)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON; default results/deploy_reach/<stem>.json"
    )
    parser.add_argument(
        "-p",
        dest="extra",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="extra policy_server parameter, applied last (e.g. -p blend_time_s:=2.0)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model = Path(args.model).resolve()
    try:
        if not 1 <= args.episodes <= 10_000:
            raise ValueError(f"--episodes {args.episodes}: allowed 1..10000")
        if any(item.startswith("publish_when_disabled") for item in args.extra):
            raise ValueError("-p publish_when_disabled: must stay false for episodic scoring")
        check_model(model)
    except ValueError as err:
        print(f"deploy_reach: error: {err}", file=sys.stderr)
        return 2
    out = args.out or RESULTS_DIR / f"{model.stem}.json"
    from cgrpo_ros.testing.deploy_episodes import evaluate_in_process

    start = time.monotonic()
    evaluated = evaluate_in_process(model, args.episodes, args.seed)
    in_process_s = time.monotonic() - start
    goals = evaluated.goals
    in_process = summary(evaluated.returns, evaluated.successes, evaluated.final_distances)
    deployed = evaluate_deployed(model, goals, args.extra)
    deployment = deployed.pop("deployment")
    from cgrpo_ros.robot.config import load_robot_config

    robot = load_robot_config()
    result = {
        "model": str(model),
        "task": "cgrpo_ros/Arm7Reach-v0",
        "episodes": args.episodes,
        "seed": args.seed,
        "success_threshold_m": robot.reach.success_threshold_m,
        "episode_steps": robot.reach.episode_steps,
        "control_rate_hz": robot.control_rate_hz,
        "goals": [[round(x, 6) for x in g] for g in goals],
        "in_process": in_process,
        "deployed": deployed,
        "policy_server_holds": deployed["policy_server_holds"],
        "deployment": deployment,
        "duration_s": {
            "in_process": round(in_process_s, 2),
            "total": round(time.monotonic() - start, 2),
        },
        "versions": versions(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    holds = sum(deployed["policy_server_holds"].values())
    print(
        f"deploy_reach {model.name}: {args.episodes} episodes (seed {args.seed}); success rate "
        f"in-process {in_process['success_rate']:.2f}, deployed {deployed['success_rate']:.2f}; "
        f"mean final distance {in_process['mean_final_distance_m']:.4f} / "
        f"{deployed['mean_final_distance_m']:.4f} m; mean return {in_process['mean_return']:.2f}"
        f" / {deployed['mean_return']:.2f}; holds {holds}; "
        f"{result['duration_s']['total']:.0f} s -> {out}"
    )
    codes = deployment["exit_codes"]
    if any(code != 0 for code in codes.values()):
        print(f"deploy_reach: a node did not shut down cleanly: {codes}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
