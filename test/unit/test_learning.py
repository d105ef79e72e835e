"""A learning smoke test with a real threshold, and the `cgrpo train` entry point end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cgrpo_ros.cli import main as cgrpo_main
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.run_logging import return_improvement
from cgrpo_ros.session import train_single_process


def test_cgrpo_full_learns_inverted_pendulum(tmp_path: Path) -> None:
    # Seeded: 20 iterations x 1024 steps x 2 policies took ~25 s on 2 cores and reached
    # 1000 (the task's maximum); a random policy scores ~5-40.
    config = CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, seed=0)
    summary = train_single_process(
        env_id="InvertedPendulum-v5",
        config=config,
        iterations=20,
        steps_per_iteration=1024,
        run_dir=tmp_path / "run",
    )
    assert summary["env_steps"] == 20 * 1024 * 2
    assert summary["best_return"] >= 500.0
    assert max(summary["final_return_per_policy"]) >= 200.0


def test_cgrpo_train_cli_writes_the_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "cli"
    argv = [
        "train", "--env", "Pendulum-v1", "--variant", "simple", "--policies", "3",
        "--groups", "2", "--iterations", "2", "--steps-per-iteration", "256",
        "--run-dir", str(run_dir), "--checkpoint-every", "1",
    ]  # fmt: skip
    assert cgrpo_main(argv) == 0
    first, last = return_improvement(run_dir / "metrics.csv") or ((0, 0.0), (0, 0.0))
    assert (first[0], last[0]) == (3 * 256, 2 * 3 * 256)  # env steps after iterations 1 and 2
    assert f"({last[1] - first[1]:+.1f})" in capsys.readouterr().out  # the run's improvement
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["env_steps"] == 2 * 256 * 3
    assert summary["variant"] == "simple" and len(summary["final_return_per_policy"]) == 3
    for name in ("metrics.csv", "curves.png", "best.onnx", "policy_2.onnx", "checkpoints"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "tensorboard").iterdir())
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3  # header + iterations x policies

    # The run directory is never silently overwritten; --resume continues it.
    assert cgrpo_main(argv) == 2
    assert cgrpo_main([*argv[:-4], "--iterations", "3", "--run-dir", str(run_dir), "--resume"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 3

    # export + eval of the checkpoint through the CLI.
    onnx_path = tmp_path / "p.onnx"
    ckpt = run_dir / "checkpoints" / "latest.ckpt"
    assert cgrpo_main(["export", str(ckpt), "--policy", "1", "-o", str(onnx_path)]) == 0
    assert cgrpo_main(["eval", str(onnx_path), "--episodes", "1"]) == 0
    assert cgrpo_main(["export", str(ckpt), "--policy", "7", "-o", str(onnx_path)]) == 2


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--groups", "5", "num_groups=5 exceeds num_policies=2"),
        ("--iterations", "0", "--iterations=0"),
    ],
)
def test_cgrpo_train_refuses_bad_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    code = cgrpo_main(["train", flag, value, "--run-dir", str(tmp_path / "x")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_training_is_deterministic_end_to_end(tmp_path: Path) -> None:
    """Same seed and config, same numbers: environment, sampling and update all seeded."""
    summaries = []
    for name in ("a", "b"):
        config = CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, seed=3)
        summaries.append(
            train_single_process(
                env_id="Pendulum-v1",
                config=config,
                iterations=2,
                steps_per_iteration=400,
                run_dir=tmp_path / name,
            )
        )
    assert summaries[0]["final_return_per_policy"] == summaries[1]["final_return_per_policy"]
    timing = {"wall_s", "kmeans_seconds", "dbscan_seconds", "update_seconds", "wait_seconds"}
    rows = []
    for name in ("a", "b"):
        with (tmp_path / name / "metrics.csv").open() as handle:
            rows.append(
                [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(handle)]
            )
    assert rows[0] == rows[1] and len(rows[0]) == 4  # every logged number but the clocks


def test_return_improvement_by_hand(tmp_path: Path) -> None:
    """First and last iteration with ended episodes, mean over the policies that had some."""
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(
        "iteration,env_steps,policy_id,mean_episode_return\n"
        "1,100,0,\n1,100,1,\n"  # no episode ended yet
        "2,200,0,-10.0\n2,200,1,-20.0\n"
        "3,300,0,5.0\n3,300,1,\n"
        "4,400,0,30.0\n4,400,1,50.0\n"
    )
    assert return_improvement(csv_path) == ((200, -15.0), (400, 40.0))
    csv_path.write_text("iteration,env_steps,policy_id,mean_episode_return\n1,100,0,3.0\n")
    assert return_improvement(csv_path) is None  # one iteration: nothing to compare
    assert return_improvement(tmp_path / "missing.csv") is None
