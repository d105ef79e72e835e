"""What a run's checkpoint says about what was not measured yet: null, not a sentinel number.

A run checkpointed before any episode ended has no best return and no success rate; the
checkpoint stores those as JSON null, and resuming gives -inf / nan back. Checkpoints of older
versions stored -1e300 and -1 instead; they still resume to the same state.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from cgrpo_ros.core.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.session import CHECKPOINT_NAME, TrainingSession
from cgrpo_ros.tasks import TaskSpec

CONFIG = CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, hidden_sizes=(8,))


def _session(run_dir: Path, resume: bool = False) -> TrainingSession:
    return TrainingSession(
        task=TaskSpec.from_env("InvertedPendulum-v5"),
        config=CONFIG,
        run_dir=run_dir,
        resume=resume,
        tensorboard=False,
    )


def test_unmeasured_values_are_null_in_the_checkpoint_and_resume_as_unmeasured(
    tmp_path: Path,
) -> None:
    session = _session(tmp_path / "run")
    path = session.save_checkpoint()
    session.logger.close()
    extra = json.loads(read_checkpoint(path)["extra_json"])
    assert extra["best_return"] is None
    assert extra["best_returns"] == [None, None] and extra["final_returns"] == [None, None]
    assert extra["final_success_rates"] == [None, None] and extra["best_success_rate"] is None
    resumed = _session(tmp_path / "run", resume=True)
    resumed.logger.close()
    assert resumed.best_return == -math.inf and resumed.best_returns == [-math.inf] * 2
    assert all(math.isnan(x) for x in resumed.final_returns)
    assert all(math.isnan(x) for x in resumed.final_success_rates)
    assert math.isnan(resumed.best_success_rate)


def test_measured_values_round_trip(tmp_path: Path) -> None:
    session = _session(tmp_path / "run")
    session.best_return, session.best_returns = 12.5, [12.5, -3.0]
    session.final_returns, session.final_success_rates = [11.0, -4.0], [0.25, math.nan]
    session.best_success_rate = 0.5
    session.save_checkpoint()
    session.logger.close()
    resumed = _session(tmp_path / "run", resume=True)
    resumed.logger.close()
    assert resumed.best_return == 12.5 and resumed.best_returns == [12.5, -3.0]
    assert resumed.final_returns == [11.0, -4.0] and resumed.best_success_rate == 0.5
    assert resumed.final_success_rates[0] == 0.25 and math.isnan(resumed.final_success_rates[1])


def test_a_checkpoint_with_the_old_sentinels_still_resumes(tmp_path: Path) -> None:
    session = _session(tmp_path / "run")
    session.logger.close()
    algo, _ = load_checkpoint(session.save_checkpoint())
    old_extra = {
        "env_steps": 0, "wall_s": 0.0, "best_return": -1e300, "best_returns": [-1e300, 7.0],
        "final_returns": [-1e300, 6.0], "best_policy": None, "task": "InvertedPendulum-v5",
        "reports_success": False, "final_success_rates": [-1.0, -1.0], "best_success_rate": -1.0,
    }  # fmt: skip
    save_checkpoint(tmp_path / "run" / "checkpoints" / CHECKPOINT_NAME, algo, old_extra)
    resumed = _session(tmp_path / "run", resume=True)
    resumed.logger.close()
    assert resumed.best_return == -math.inf and resumed.best_returns == [-math.inf, 7.0]
    assert math.isnan(resumed.final_returns[0]) and resumed.final_returns[1] == 6.0
    assert math.isnan(resumed.best_success_rate)
