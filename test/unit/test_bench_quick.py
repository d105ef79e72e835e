"""The benchmark harness in quick mode: it must keep working (issue 5)."""

from __future__ import annotations

import json
from pathlib import Path

from cgrpo_ros.bench import RunSpec, steps_to_fraction
from cgrpo_ros.cli import main as cgrpo_main


def test_steps_to_90pct_is_the_first_crossing() -> None:
    curve = [(100, 10.0), (200, 95.0), (300, 80.0), (400, 99.0)]
    assert steps_to_fraction(curve, 100.0) == 200
    assert steps_to_fraction(curve, 1000.0) is None
    assert steps_to_fraction(curve, None) is None


def test_quick_bench_writes_one_file_per_run_and_resumes(tmp_path: Path) -> None:
    out, docs = tmp_path / "out", tmp_path / "docs"
    docs.mkdir()
    argv = ["bench", "--quick", "--methods", "cgrpo-simple", "ppo", "--seeds", "0",
            "--out", str(out)]  # fmt: skip
    assert cgrpo_main(argv) == 0
    files = sorted(out.glob("*/*/seed*.json"))
    assert [f.parent.name for f in files] == ["cgrpo-simple", "ppo"]
    for path in files:
        result = json.loads(path.read_text())
        assert result["env_steps"] == result["budget_steps"] == 4096  # budgets are equal
        assert len(result["perturbed_returns"]) == 4 and result["curve"]
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert cgrpo_main(argv) == 0  # finished runs are skipped, not repeated
    assert [f.stat().st_mtime_ns for f in files] == mtimes

    assert cgrpo_main(["bench", "--out", str(out), "--report", str(docs)]) == 0
    rows = json.loads((docs / "results.json").read_text())
    required = {"method", "task", "seed", "budget_steps", "final_return", "steps_to_90pct",
                "wall_s", "perturbed_ratio"}  # fmt: skip
    assert len(rows) == 2 and all(required <= set(row) for row in rows)
    assert (docs / "figures" / "learning_curves.png").exists()
    assert (docs / "figures" / "per_policy_curves.png").exists()  # the paper's Figure 1


def test_bench_refuses_unknown_methods(tmp_path: Path) -> None:
    assert cgrpo_main(["bench", "--methods", "trpo", "--out", str(tmp_path)]) == 2
    assert RunSpec("ppo", "Hopper-v5", 1, 300_000).path(tmp_path).name == "seed1-300000.json"
