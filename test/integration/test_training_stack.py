"""The training stack as real processes over DDS: learner, rollout workers, `cgrpo train-sim`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cgrpo_ros.testing.ros_processes import (
    probe_node,
    process_output,
    run_to_exit,
    start_node_process,
    stop_process,
    wait_for,
)
from cgrpo_ros.testing.run_files import missing_final_files

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from stack_helpers import (  # noqa: E402
    ENV_ID,
    learner_argv,
    make_batch,
    worker_argv,
)
from std_msgs.msg import String, UInt8MultiArray  # noqa: E402

from cgrpo_ros.wire.frame import to_uint8_msg  # noqa: E402
from cgrpo_ros.wire.trajectory import encode_trajectory  # noqa: E402

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 150.0  # process start (torch, MuJoCo) + DDS discovery + updates, loaded machine
WAIT_S = 60.0


@dataclass
class Probe:
    node: Node
    executor: SingleThreadedExecutor
    worker_status: list[dict[str, Any]] = field(default_factory=list)
    learner_status: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def spin(self, timeout: float) -> None:
        self.executor.spin_once(timeout_sec=timeout)


@pytest.fixture
def probe(ros_env: dict[str, str]) -> Iterator[Probe]:
    with probe_node(ros_env, "stack_probe") as (node, executor):
        p = Probe(node=node, executor=executor)
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )

        def keep(into: list[dict[str, Any]]) -> Any:
            return lambda msg: into.append(json.loads(msg.data))

        node.create_subscription(String, "/cgrpo/worker_status", keep(p.worker_status), 50)
        node.create_subscription(String, "/cgrpo/learner_status", keep(p.learner_status), latched)
        node.create_subscription(String, "/cgrpo/metrics", keep(p.metrics), 50)
        yield p


def _wait_exit(proc: subprocess.Popen[bytes], probe: Probe, timeout: float) -> bool:
    return wait_for(lambda: proc.poll() is not None, timeout, probe.spin)


def test_learner_and_one_worker_train_and_exit_cleanly(
    ros_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    learner = start_node_process(learner_argv(run_dir, iterations=3), ros_env)
    worker = start_node_process(worker_argv("rollout_worker_0", [0, 1]), ros_env)
    try:
        finished = _wait_exit(learner, probe, RUN_TIMEOUT_S)
        assert finished, f"learner still running:\n{process_output(learner)}"
        assert _wait_exit(worker, probe, 20.0), f"worker kept running:\n{process_output(worker)}"
        for _ in range(10):  # messages still queued in the probe
            probe.spin(0.05)
    finally:
        codes = stop_process(learner), stop_process(worker)
    out = process_output(learner) + process_output(worker)
    assert codes == (0, 0), out
    assert "Traceback" not in out, out
    # The learner updated 3 times and said so on /cgrpo/metrics.
    assert [m["iteration"] for m in probe.metrics] == [1, 2, 3], out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "ros" and summary["iterations"] == 3
    assert summary["env_steps"] == 3 * 2 * 128 and summary["worker_ids"] == ["rollout_worker_0"]
    assert missing_final_files(run_dir, num_policies=2) == []
    # A locomotion task reports no success: no rate anywhere, not a made-up 0.
    assert summary.get("success_rate") is None and "best_success_rate" not in summary
    assert all(m["success_rate_per_policy"] is None for m in probe.metrics), probe.metrics
    assert "success [" not in out, out
    # The worker acted with increasing policy versions (its status topic).
    versions = [s["versions"]["0"] for s in probe.worker_status if s["versions"]["0"] is not None]
    assert versions == sorted(versions) and len(set(versions)) >= 2, probe.worker_status
    assert versions[-1] == 2, probe.worker_status  # the final version 3 is not collected
    assert probe.learner_status[-1]["done"] is True


def test_train_sim_command_with_two_workers(ros_env: dict[str, str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run2"
    code = (
        "import argparse, sys\n"
        "from cgrpo_ros.cli.train_sim import add_train_sim_parser\n"
        "p = argparse.ArgumentParser(); sub = p.add_subparsers(dest='command')\n"
        "add_train_sim_parser(sub); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
    )
    config = tmp_path / "fast.yaml"
    config.write_text("epochs: 1\nkmeans_n_init: 1\n")
    argv = [sys.executable, "-c", code, "train-sim", "--env", ENV_ID, "--workers", "2",
            "--iterations", "2", "--steps-per-iteration", "128", "--run-dir", str(run_dir),
            "--config", str(config)]  # fmt: skip
    env = {k: v for k, v in ros_env.items() if k != "ROS_DOMAIN_ID"}  # train-sim picks one
    proc = subprocess.run(
        argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "iteration 2/2" in out and "final mean return per policy" in out, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["worker_ids"] == ["rollout_worker_0", "rollout_worker_1"], summary
    assert summary["env_steps"] == 2 * 2 * 128
    # Issue 18: by default the run is signed with ephemeral keys (deleted at the end); the
    # public half stays in the run directory and verifies its files.
    assert "frames signed (learner key" in out and summary["rejected"] == {}, out
    from cgrpo_ros.cli import main as cgrpo_main

    pub = str(run_dir / "signing_key.pub")
    assert cgrpo_main(["verify", str(run_dir / "policy_1.onnx"), "--trusted-keys", pub]) == 0


def test_learner_rejects_bad_trajectories_and_keeps_going(
    ros_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run3"
    learner = start_node_process(learner_argv(run_dir, steps_per_iteration=64), ros_env)
    pub = probe.node.create_publisher(UInt8MultiArray, "/cgrpo/trajectories", 20)

    def send(policy_id: int, version: int, seq: int, steps: int = 64, worker: str = "t") -> None:
        frame = encode_trajectory(make_batch(steps), policy_id=policy_id, policy_version=version,
                                  worker_id=worker, seq=seq, task=ENV_ID)  # fmt: skip
        pub.publish(to_uint8_msg(frame))

    def status() -> dict[str, Any]:
        return probe.learner_status[-1] if probe.learner_status else {}

    try:
        assert wait_for(lambda: pub.get_subscription_count() > 0 and bool(status()), WAIT_S,
                        probe.spin), process_output(learner)  # fmt: skip
        pub.publish(to_uint8_msg(os.urandom(300)))  # malformed
        send(policy_id=7, version=0, seq=1)  # unknown policy
        send(policy_id=0, version=0, seq=2, steps=32)  # wrong size
        send(policy_id=0, version=5, seq=3)  # future version
        send(policy_id=0, version=0, seq=4)
        send(policy_id=1, version=0, seq=5)  # iteration 0 complete
        assert wait_for(lambda: status().get("iteration") == 1, WAIT_S, probe.spin), process_output(
            learner
        )
        send(policy_id=0, version=0, seq=6)  # stale
        send(policy_id=1, version=1, seq=5)  # duplicate (worker, seq)
        expected = {"malformed": 1, "unknown_policy": 1, "wrong_size": 1, "future_version": 1,
                    "stale": 1, "duplicate": 1}  # fmt: skip
        assert wait_for(lambda: status().get("rejected") == expected, WAIT_S, probe.spin), (
            f"{status()}\n{process_output(learner)}"
        )
        assert learner.poll() is None, process_output(learner)
        send(policy_id=0, version=1, seq=7)
        send(policy_id=1, version=1, seq=8)  # iteration 1 complete: the run ends
        assert _wait_exit(learner, probe, RUN_TIMEOUT_S), process_output(learner)
    finally:
        code = stop_process(learner)
    out = process_output(learner)
    assert code == 0, out
    assert "rejected trajectory (malformed" in out and "Traceback" not in out, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["rejected"] == expected


def test_same_state_groups_through_the_stack(
    ros_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    """The learner's config asks for same-state groups; the worker reads that from the
    policy metadata, snapshots its MuJoCo env and sends grouped batches; a plain batch is
    refused (wrong_rollout_mode) and every branch step counts."""
    run_dir = tmp_path / "groups"
    groups = {"cgrpo.group_size": 4, "cgrpo.group_horizon": 16}
    learner = start_node_process(learner_argv(run_dir, **groups), ros_env)
    pub = probe.node.create_publisher(UInt8MultiArray, "/cgrpo/trajectories", 20)
    try:
        assert wait_for(lambda: pub.get_subscription_count() > 0 and bool(probe.learner_status),
                        WAIT_S, probe.spin), process_output(learner)  # fmt: skip
        plain = encode_trajectory(make_batch(128), policy_id=0, policy_version=0, worker_id="t",
                                  seq=1, task=ENV_ID)  # fmt: skip
        pub.publish(to_uint8_msg(plain))
        worker = start_node_process(worker_argv("rollout_worker_0", [0, 1]), ros_env)
        finished = _wait_exit(learner, probe, RUN_TIMEOUT_S)
        assert finished, f"learner still running:\n{process_output(learner)}"
        assert _wait_exit(worker, probe, 20.0), f"worker kept running:\n{process_output(worker)}"
    finally:
        codes = stop_process(learner), stop_process(worker)
    out = process_output(learner) + process_output(worker)
    assert codes == (0, 0), out
    assert "Traceback" not in out, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["env_steps"] == 2 * 2 * 128
    assert summary["config"]["group_size"] == 4 and summary["config"]["group_horizon"] == 16
    assert summary["rejected"] == {"wrong_rollout_mode": 1}, out
    assert "a plain batch from 't'; this run trains with same-state groups" in out, out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            worker_argv("rollout_worker_0", [0], backend="turbo"),
            ["'backend'", "turbo", "ros_robot"],
        ),
        (learner_argv(Path("unused"), iterations=0), ["'iterations'", "0", "[1, 1000000000]"]),
    ],
)
def test_bad_parameter_is_refused_with_exit_code_2(
    ros_env: dict[str, str], argv: list[str], expected: list[str]
) -> None:
    code, out = run_to_exit(argv, ros_env, WAIT_S)
    assert code == 2, out
    assert all(e in out for e in expected) and "Traceback" not in out, out
