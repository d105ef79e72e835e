"""benchmarks/deploy_reach.py on a tiny budget: an untrained Arm7Reach policy, 2 episodes.

An untrained policy commands (about) the home pose whatever it sees (TaskSpec.rest_action),
so the arm stays near home in-process and deployed, and the final fingertip distances must
agree closely: the check that both sides score the same goals from the same start pose with
the same definition. Trained policies are compared by the benchmark itself (docs/deploy.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.session import TrainingSession
from cgrpo_ros.share import PACKAGE_ROOT as ROOT
from cgrpo_ros.tasks import TaskSpec
from cgrpo_ros.testing.deploy_episodes import EPISODE_OVERRIDES
from sim_bridge.envs import ENV_ID

pytestmark = pytest.mark.integration
BENCHMARK = ROOT / "benchmarks" / "deploy_reach.py"


def run_benchmark(*args: str) -> tuple[int, str]:
    """The benchmark as a user runs it (its own process; tests never import benchmarks)."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), *args], capture_output=True, text=True, timeout=600
    )
    return result.returncode, result.stdout + result.stderr


EPISODES = 2
# Final fingertip distance, deployed vs in-process, per episode [m]. Measured < 1e-6 m with
# an untrained policy (the arm barely moves); 5 mm is a tenth of the success threshold.
DISTANCE_TOLERANCE_M = 0.005


def untrained_model(tmp_path: Path) -> Path:
    config = CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, seed=0)
    session = TrainingSession(
        task=TaskSpec.from_env(ENV_ID), config=config, run_dir=tmp_path / "run", tensorboard=False
    )
    try:
        path = tmp_path / "untrained.onnx"
        path.write_bytes(session.policy_artifact(0))
    finally:
        session.logger.close()
    return path


def test_deploy_reach_scores_success_in_process_and_deployed(tmp_path: Path) -> None:
    model = untrained_model(tmp_path)
    out = tmp_path / "result.json"
    code, summary = run_benchmark(
        "--model", str(model), "--episodes", str(EPISODES), "--seed", "7", "--out", str(out)
    )
    assert code == 0, summary
    assert "success rate in-process" in summary and str(out) in summary
    result = json.loads(out.read_text())
    assert result["model"] == str(model.resolve())
    assert result["episodes"] == EPISODES and len(result["goals"]) == EPISODES
    for side in ("in_process", "deployed"):
        scored = result[side]
        assert 0.0 <= scored["success_rate"] <= 1.0
        for key in ("successes", "final_distances_m", "returns"):
            assert len(scored[key]) == EPISODES, (side, key)
        # The per-episode list is rounded to 1e-6 m in the JSON, the mean is not.
        assert scored["mean_final_distance_m"] == pytest.approx(
            np.mean(scored["final_distances_m"]), abs=1e-6
        )
        # Success is exactly "final distance below the threshold", on both sides.
        threshold = result["success_threshold_m"]
        assert scored["successes"] == [d < threshold for d in scored["final_distances_m"]]
    inside, deployed = result["in_process"], result["deployed"]
    gaps = np.abs(np.subtract(deployed["final_distances_m"], inside["final_distances_m"]))
    assert (gaps <= DISTANCE_TOLERANCE_M).all(), (inside, deployed)
    assert deployed["success_rate"] == inside["success_rate"]
    assert isinstance(result["policy_server_holds"], dict)
    assert all(n > 0.5 * result["episode_steps"] for n in deployed["commands_per_episode"])
    assert {"cgrpo_ros", "mujoco", "onnxruntime", "python"} <= set(result["versions"])
    # The server ran with config/deploy.yaml's values (what deploy.launch.py loads), except
    # the model and the documented episode overrides.
    deployment = result["deployment"]
    assert deployment["exit_codes"] == {"policy_server": 0, "sim_bridge": 0}
    used = deployment["server_parameters"]
    yaml_params = yaml.safe_load((ROOT / "config" / "deploy.yaml").read_text())["policy_server"][
        "ros__parameters"
    ]
    for name, value in yaml_params.items():
        if name == "model_path":
            assert used[name] == str(model.resolve())
        elif name in EPISODE_OVERRIDES:
            assert used[name] == yaml.safe_load(EPISODE_OVERRIDES[name]), name
        else:
            assert used[name] == value, name


def test_deploy_reach_refuses_bad_arguments(tmp_path: Path) -> None:
    """Exit code 2 before anything starts: not a model, no file, no episodes."""
    bad = tmp_path / "not_onnx.onnx"
    bad.write_bytes(b"not a model")
    assert run_benchmark("--model", str(bad), "--out", str(tmp_path / "x.json"))[0] == 2
    assert run_benchmark("--model", str(tmp_path / "missing.onnx"))[0] == 2
    model = untrained_model(tmp_path)
    assert run_benchmark("--model", str(model), "--episodes", "0")[0] == 2
    assert not (tmp_path / "x.json").exists()
