"""What a stopped run must have left in its run directory (TrainingSession.finish), checked
the same way by the CI integration tests and the launch_testing tests that CI skips."""

from __future__ import annotations

from pathlib import Path


def final_run_files(num_policies: int) -> list[str]:
    """The files `TrainingSession.finish` writes, relative to the run directory."""
    policies = [f"policy_{i}.onnx" for i in range(num_policies)]
    return ["summary.json", "metrics.csv", "checkpoints/latest.ckpt", *policies]


def missing_final_files(run_dir: Path, num_policies: int) -> list[str]:
    """Those of `final_run_files` that `run_dir` lacks (empty after a clean stop)."""
    return [name for name in final_run_files(num_policies) if not (run_dir / name).is_file()]
