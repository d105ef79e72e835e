"""What the `cgrpo` subcommands share: the training flags, their checks, the summary print.

Only the standard library at module level (`cgrpo --help` stays fast; the launch files import
from `cgrpo_ros.cli.train_sim`, which imports this).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cgrpo_ros.core.run_shape import RUN_SHAPE, RunShape
from cgrpo_ros.run_logging import return_improvement

DEFAULT_ENV = "HalfCheetah-v5"


def add_training_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=DEFAULT_ENV, help="gymnasium task id (Box actions)")
    parser.add_argument("--variant", choices=["full", "simple"], default="full")
    # The run's shape, declared once (core/run_shape.py). Its default iterations make the
    # README's main job a few minutes on 2 cores; the paper's set-up is --iterations 500.
    for field in RUN_SHAPE:
        parser.add_argument(field.flag, type=int, default=field.default, help=field.help)
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
    """The run's CGRPOConfig: --variant < --config file < the run's shape flags."""
    from cgrpo_ros.core.config import CGRPOConfig, load_config_file

    overrides = load_config_file(args.config) if args.config is not None else {}
    return CGRPOConfig.for_run(args.variant, RunShape.from_flags(args), overrides)


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
