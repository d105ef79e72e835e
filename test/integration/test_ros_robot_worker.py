"""The `ros_robot` backend against the real sim_bridge node (lockstep), with a learner."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from cgrpo_ros.testing.ros_processes import (
    REPO_ROOT,
    isolated_ros_env,
    process_output,
    start_node_process,
    stop_process,
)
from cgrpo_ros.testing.ros_processes import (
    node_argv as shared_node_argv,
)
from cgrpo_ros.testing.run_files import missing_final_files

pytest.importorskip("rclpy")
pytestmark = pytest.mark.integration

PARAMS_FILE = REPO_ROOT / "config" / "train_sim_robot.yaml"
RUN_TIMEOUT_S = 180.0


def node_argv(module: str, name: str, params: dict[str, Any]) -> list[str]:
    return shared_node_argv(PARAMS_FILE, module, name, params)


def test_ros_robot_worker_trains_on_the_sim_bridge(tmp_path: Path) -> None:
    env = isolated_ros_env()
    run_dir = tmp_path / "run"
    steps = 200  # two 100-step episodes per policy and iteration
    sim = start_node_process(node_argv("sim_bridge.node", "sim_bridge", {}), env)
    learner = start_node_process(
        node_argv(
            "cgrpo_ros.nodes.learner",
            "learner",
            {
                "iterations": 2,
                "steps_per_iteration": steps,
                "run_dir": str(run_dir),
                "cgrpo.epochs": 1,
                "cgrpo.kmeans_n_init": 1,
            },
        ),
        env,
    )
    worker = start_node_process(
        node_argv(
            "cgrpo_ros.nodes.rollout_worker", "rollout_worker_0", {"steps_per_iteration": steps}
        ),
        env,
    )
    try:
        learner.wait(timeout=RUN_TIMEOUT_S)
        worker.wait(timeout=20.0)
    finally:
        codes = stop_process(learner), stop_process(worker), stop_process(sim)
    out = "\n".join(process_output(p) for p in (learner, worker, sim))
    assert codes == (0, 0, 0), out
    assert "Traceback" not in out, out
    assert "backend ros_robot" in out and "lockstep=True" in out, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "cgrpo_ros/Arm7Reach-v0" and summary["iterations"] == 2
    assert summary["env_steps"] == 2 * 2 * steps
    assert missing_final_files(run_dir, num_policies=2) == []
    # Whole 100-step episodes were scored: progress rewards, bounded by the workspace size.
    returns = summary["final_return_per_policy"]
    assert all(r is not None and -200.0 < r < 50.0 for r in returns), summary
    # Each batch starts with a reset: 2 policies x 2 iterations x 2 episodes.
    assert out.count("reset to home pose") >= 8, out
    # Success flags travel in the trajectory frames (ReachTask.is_success on each episode's
    # last step), so the ROS learner reports success rate as `cgrpo train` does.
    rate = summary["success_rate"]
    assert isinstance(rate, float | int) and 0.0 <= rate <= 1.0, summary
    rates = summary["final_success_rate_per_policy"]
    assert len(rates) == 2 and all(r is not None and 0.0 <= r <= 1.0 for r in rates), summary
    assert out.count("], success [") == 2, out  # the learner's line of each iteration
    with (run_dir / "metrics.csv").open() as f:
        column = [row["success_rate"] for row in csv.DictReader(f)]
    assert len(column) == 2 * 2 and all(0.0 <= float(x) <= 1.0 for x in column), column


def test_ros_robot_worker_refuses_same_state_groups(tmp_path: Path) -> None:
    """A robot cannot be put back into a saved state: the worker exits 2 and says why."""
    env = isolated_ros_env()
    learner = start_node_process(
        node_argv(
            "cgrpo_ros.nodes.learner",
            "learner",
            {
                "iterations": 1,
                "steps_per_iteration": 200,
                "run_dir": str(tmp_path / "run"),
                "cgrpo.group_size": 4,
            },
        ),
        env,
    )
    worker = start_node_process(
        node_argv("cgrpo_ros.nodes.rollout_worker", "rollout_worker_0", {}), env
    )
    try:
        code = worker.wait(timeout=RUN_TIMEOUT_S)
    finally:
        stop_process(worker), stop_process(learner)
    out = process_output(worker)
    assert code == 2, out
    assert "same-state groups (cgrpo.rollout_group_size = 4)" in out, out
    assert "'backend' = 'ros_robot'" in out and "cannot be put back" in out, out
    assert "Traceback" not in out, out
