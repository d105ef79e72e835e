"""What the `cgrpo` subcommands share: the training flags, their checks, the summary print.

Only the standard library at module level (`cgrpo --help` stays fast; the launch files import
from `cgrpo_ros.cli.train_sim`, which imports this).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cgrpo_ros.run_logging import return_improvement

DEFAULT_ENV = "HalfCheetah-v5"
# The README's main job: a few minutes on 2 cores. The paper's set-up is --iterations 500.
DEFAULT_ITERATIONS = 25
DEFAULT_STEPS = 2048


def add_training_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=DEFAULT_ENV, help="gymnasium task id (Box actions)")
    parser.add_argument("--variant", choices=["full", "simple"], default="full")
    parser.add_argument("--policies", type=int, default=2, help="N policies trained together")
    parser.add_argument("--groups", type=int, default=2, help="K k-means groups (K <= N)")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument("--steps-per-iteration", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML/JSON file of CGRPOConfig overrides"
    )
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument(
        "--signing-key",
        type=Path,
        default=None,
        help="Ed25519 private key (cgrpo keygen) signing every policy artifact (docs/security.md)",
    )


def build_config(args: argparse.Namespace) -> Any:
    from cgrpo_ros.core.config import CGRPOConfig, load_config_file

    overrides: dict[str, Any] = {}
    if args.config is not None:
        overrides.update(load_config_file(args.config))
    overrides.update(num_policies=args.policies, num_groups=args.groups, seed=args.seed)
    return CGRPOConfig.for_variant(args.variant, **overrides)


def check_positive(name: str, value: int, limit: int = 10**9) -> None:
    if not 1 <= value <= limit:
        raise ValueError(f"{name}={value} is outside the allowed range [1, {limit}]")


def load_signer(path: Path | None) -> Any:
    """The SigningKey of --signing-key (KeyFileError is a ValueError: exit 2), or None."""
    if path is None:
        return None
    from cgrpo_ros.core.signing import SigningKey

    return SigningKey.load(path)


def print_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    print(f"run directory: {run_dir}")
    keys = ("task", "variant", "iterations", "env_steps", "wall_s", "env_steps_per_s")
    print(json.dumps({k: summary.get(k) for k in keys}))
    print("final mean return per policy:", summary["final_return_per_policy"])
    print("best mean return per policy: ", summary["best_return_per_policy"])
    if "final_success_rate_per_policy" in summary:
        print("final success rate per policy:", summary["final_success_rate_per_policy"])
    improvement = return_improvement(run_dir / "metrics.csv")
    if improvement is not None:
        first, last = improvement
        print(
            f"learning: mean episode return {first[1]:.1f} at {first[0]} steps -> "
            f"{last[1]:.1f} at {last[0]} steps ({last[1] - first[1]:+.1f})"
        )
