"""Faults the training stack must survive, with real node processes over an isolated DDS domain.

Issue 6: a worker killed with SIGKILL mid-batch, the learner killed with SIGKILL and resumed,
a corrupt latest checkpoint, and SIGINT/SIGTERM of every node. Each test checks that nothing
was lost or counted twice: `env_steps` in summary.json is iterations x steps x policies.
The times each test measures (to detection, to recovery) are what docs/reliability.md reports;
`benchmarks/reliability_report.py` repeats these tests and prints the table.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cgrpo_ros.testing.ros_processes import (
    process_output,
    start_node_process,
    stop_process,
    wait_for,
)

rclpy = pytest.importorskip("rclpy")
from stack_helpers import (  # noqa: E402
    ENV_ID,
    learner_argv,
    open_probe,
    record_figure,
    worker_argv,
)
from std_msgs.msg import UInt8MultiArray  # noqa: E402

from cgrpo_ros.core.checkpoint import read_checkpoint  # noqa: E402
from cgrpo_ros.wire.frame import WireFormatError, from_uint8_msg  # noqa: E402
from cgrpo_ros.wire.trajectory import decode_trajectory  # noqa: E402

pytestmark = pytest.mark.integration

STEPS = 4000  # per policy and iteration (~0.7 s each here): a SIGKILL lands mid-batch
RUN_TIMEOUT_S = 100.0
WAIT_S = 45.0  # process start (torch, MuJoCo, onnxruntime) + discovery on a loaded machine


def _summary(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return data


def _stop_all(*procs: subprocess.Popen[bytes] | None) -> list[int]:
    return [stop_process(p) for p in procs if p is not None]


def test_worker_sigkill_detected_and_replacement_continues(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    run_dir, iterations, timeout_s = tmp_path / "run", 4, 2.0
    learner = start_node_process(
        learner_argv(run_dir, iterations=iterations, steps_per_iteration=STEPS,
                     worker_timeout_s=timeout_s), ros_env)  # fmt: skip
    worker = start_node_process(worker_argv("rollout_worker_0", [0, 1], steps_per_iteration=STEPS),
                                ros_env)  # fmt: skip
    replacement = None
    try:
        with open_probe(ros_env) as probe:
            # Kill shortly after version 1 is out: the worker is then collecting its batches.
            assert probe.wait_policy_version(1), process_output(learner)
            time.sleep(0.3)
            killed_at_iteration = 1
            worker.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            worker.wait(timeout=10)
            assert probe.wait_status(lambda s: bool(s.get("stalled_policies")), timeout_s + 10), (
                f"{probe.status()}\n{process_output(learner)}"
            )
            detected_s = time.monotonic() - killed
            # Detection: worker_timeout_s after the worker's last status (up to 1 s before the
            # kill), plus the learner's 0.5 s check period and 1 s status period.
            assert detected_s <= timeout_s + 3.0, detected_s
            assert learner.poll() is None, process_output(learner)
            stalled_iteration = probe.status()["iteration"]

            replacement_started = time.monotonic()
            replacement = start_node_process(
                worker_argv("rollout_worker_1", [0, 1], steps_per_iteration=STEPS), ros_env
            )
            # The replacement gets the current version from the latched topic (no learner
            # restart) and the learner moves on.
            assert probe.wait_status(lambda s: s.get("iteration", 0) > stalled_iteration), (
                process_output(learner) + process_output(replacement)
            )
            recovered_s = time.monotonic() - replacement_started
            assert not probe.status()["stalled_policies"]
            assert probe.wait_exit(learner), process_output(learner)
            assert probe.wait_exit(replacement, 20.0), process_output(replacement)
            acted = [s for s in probe.worker_status if s["worker_id"] == "rollout_worker_1"]
            first_versions = [s["versions"]["0"] for s in acted if s["versions"]["0"] is not None]
    finally:
        codes = _stop_all(learner, worker, replacement)
    out = process_output(learner)
    assert codes[0] == 0 and codes[2] == 0, out
    assert "no batch or status for policy" in out and "Traceback" not in out, out
    assert first_versions and first_versions[0] == stalled_iteration, first_versions
    summary = _summary(run_dir)
    # Nothing lost, nothing counted twice: only accepted batches count, one per policy and
    # iteration (a batch the dead worker sent before dying may make the replacement's
    # duplicate of it a `surplus`, which is refused and not counted).
    assert summary["iterations"] == iterations
    assert summary["env_steps"] == iterations * STEPS * 2, summary
    assert set(summary["rejected"]) <= {"surplus", "stale"}, summary["rejected"]
    record_figure("worker SIGKILL mid-batch", killed_at_iteration=killed_at_iteration,
                  detected_s=round(detected_s, 2), recovered_s=round(recovered_s, 2),
                  steps_lost=iterations * STEPS * 2 - summary["env_steps"],
                  rejected=summary["rejected"])  # fmt: skip


def _checkpoint_state(run_dir: Path) -> tuple[str, dict[str, Any]]:
    """The checkpoint a resume would use (latest, else previous) and its state."""
    for name in ("latest.ckpt", "previous.ckpt"):
        path = run_dir / "checkpoints" / name
        try:
            return name, read_checkpoint(path)
        except ValueError:
            continue
    raise AssertionError(f"no readable checkpoint in {run_dir}")


def test_learner_sigkill_resumes_from_last_checkpoint(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    run_dir, iterations, steps = tmp_path / "run", 5, 2000
    argv = learner_argv(run_dir, iterations=iterations, steps_per_iteration=steps,
                        checkpoint_every=1)  # fmt: skip
    learner = start_node_process(argv, ros_env)
    worker = start_node_process(worker_argv("rollout_worker_0", [0, 1], steps_per_iteration=steps),
                                ros_env)  # fmt: skip
    resumed = None
    try:
        with open_probe(ros_env) as probe:
            # Version 2 is published right after checkpoint 2 is written: kill then.
            assert probe.wait_policy_version(2), process_output(learner)
            learner.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            learner.wait(timeout=10)
            name, state = _checkpoint_state(run_dir)
            k = int(state["iteration"])
            extra = json.loads(state["extra_json"])
            # The checkpoint is self-consistent: steps and normaliser counts match iteration k.
            assert extra["env_steps"] == k * 2 * steps, (k, extra)
            for policy_state in state["policies"]:
                assert float(policy_state["normalizer.count"]) == k * steps
            # A policy published after the restart must be the checkpoint's policy k.
            probe.policies.clear()
            resumed = start_node_process(learner_argv(run_dir, iterations=iterations,
                                         steps_per_iteration=steps, checkpoint_every=1,
                                         resume=True), ros_env)  # fmt: skip
            assert probe.wait_status(lambda s: s.get("iteration", 0) > k), process_output(
                resumed
            ) + process_output(worker)
            recovered_s = time.monotonic() - killed
            republished = [(i, v, b) for i, v, b in probe.policies if v == k]
            assert probe.wait_exit(resumed), process_output(resumed)
            assert probe.wait_exit(worker, 20.0), process_output(worker)
    finally:
        codes = _stop_all(learner, resumed, worker)
    out = process_output(resumed) if resumed else ""
    assert codes[1:] == [0, 0], out + process_output(worker)
    assert f"resumed at iteration {k} from" in out and "Traceback" not in out, out
    _check_policy_matches_checkpoint(republished, state)
    summary = _summary(run_dir)
    assert summary["iterations"] == iterations
    assert summary["env_steps"] == iterations * 2 * steps, summary  # nothing double counted
    _, final = _checkpoint_state(run_dir)
    for policy_state in final["policies"]:
        assert float(policy_state["normalizer.count"]) == iterations * steps
    record_figure("learner SIGKILL, resume", checkpoint=name, resumed_at=k,
                  recovered_s=round(recovered_s, 2),
                  steps_lost=iterations * 2 * steps - summary["env_steps"])  # fmt: skip


# Checkpoints of ~10 MB (512-unit layers, Adam moments): a write lasts tens of milliseconds, so
# a SIGKILL sent when its temporary file appears lands inside the write.
BIG_POLICIES = {"cgrpo.hidden_sizes": [512, 512]}


def _partial_checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob(".*.tmp"))


def _kill_during_checkpoint_write(proc: subprocess.Popen[bytes], run_dir: Path) -> bool:
    """SIGKILL `proc` as soon as a checkpoint write starts; True if it died inside the write."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if _partial_checkpoints(run_dir):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            return bool(_partial_checkpoints(run_dir))  # still there: the rename never happened
        time.sleep(0.0002)
    raise AssertionError(f"no checkpoint write seen in {WAIT_S} s\n{process_output(proc)}")


def _assert_consistent(state: dict[str, Any], steps: int) -> int:
    """A checkpoint's counters all describe the same iteration k; returns k."""
    k = int(state["iteration"])
    assert json.loads(state["extra_json"])["env_steps"] == k * 2 * steps, state["extra_json"]
    for policy_state in state["policies"]:
        assert float(policy_state["normalizer.count"]) == k * steps
    return k


def test_learner_sigkill_during_update_and_during_checkpoint_write(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    """Killed inside an update, then inside a checkpoint write: each resume continues from the
    last complete checkpoint, and the finished run counts every step exactly once."""
    run_dir, iterations, steps = tmp_path / "run", 8, 1000

    def start_learner(resume: bool) -> subprocess.Popen[bytes]:
        argv = learner_argv(run_dir, iterations=iterations, steps_per_iteration=steps,
                            checkpoint_every=1, resume=resume, **BIG_POLICIES)  # fmt: skip
        return start_node_process(argv, ros_env)

    worker = start_node_process(worker_argv("rollout_worker_0", [0, 1], steps_per_iteration=steps),
                                ros_env)  # fmt: skip
    learners = [start_learner(resume=False)]
    batches: set[tuple[int, int]] = set()  # (policy id, version) seen on the trajectory topic
    logs: list[str] = []
    try:
        with open_probe(ros_env) as probe:

            def on_batch(msg: UInt8MultiArray) -> None:
                with contextlib.suppress(WireFormatError):
                    traj = decode_trajectory(from_uint8_msg(msg))
                    batches.add((traj.policy_id, traj.policy_version))

            probe.node.create_subscription(UInt8MultiArray, "/cgrpo/trajectories", on_batch, 10)
            # 1. Inside an update: both batches of version 2 are out, so the learner is turning
            # them into version 3 (the checkpoint on disk is still iteration 2).
            assert wait_for(lambda: {(0, 2), (1, 2)} <= batches, 2 * WAIT_S, probe.spin), (
                process_output(learners[0])
            )
            learners[0].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            learners[0].wait(timeout=10)
            assert not _partial_checkpoints(run_dir), "killed in the update, not in a write"
            _, state = _checkpoint_state(run_dir)
            assert _assert_consistent(state, steps) == 2
            learners.append(start_learner(resume=True))
            assert probe.wait_status(lambda s: s.get("iteration", 0) > 2), process_output(
                learners[-1]
            )
            recovered_update_s = time.monotonic() - killed

            # 2. Inside a checkpoint write (a kill that lands just after the rename instead is
            # retried at a later checkpoint).
            in_write = False
            for _ in range(3):
                in_write = _kill_during_checkpoint_write(learners[-1], run_dir)
                killed = time.monotonic()
                name, state = _checkpoint_state(run_dir)
                k = _assert_consistent(state, steps)
                if in_write:
                    # latest.ckpt was rotated to previous.ckpt before the write: the only
                    # partial file is the temporary one, which is never read.
                    assert name == "previous.ckpt", name
                leftovers = set(_partial_checkpoints(run_dir))
                logs.append(process_output(learners[-1]))
                # The killed learner may have said iteration k + 1 before its checkpoint write:
                # only the resumed learner's statuses count.
                probe.spin(0.1)
                probe.learner_status.clear()
                learners.append(start_learner(resume=True))
                assert probe.wait_status(lambda s, k=k: s.get("iteration", 0) > k), process_output(
                    learners[-1]
                )
                recovered_write_s = time.monotonic() - killed

                # The resume removed the killed write's file (mkstemp names: a .tmp of the
                # resumed learner's own writes never has the same name).
                def killed_write_removed(left: set[Path] = leftovers) -> bool:
                    return not left & set(_partial_checkpoints(run_dir))

                assert wait_for(killed_write_removed, 10.0, probe.spin), (
                    leftovers,
                    process_output(learners[-1]),
                )
                if in_write:
                    break
            assert in_write, "no SIGKILL landed inside a checkpoint write in 3 tries"
            assert probe.wait_exit(learners[-1]), process_output(learners[-1])
            assert probe.wait_exit(worker, 20.0), process_output(worker)
    finally:
        codes = _stop_all(*learners, worker)
    out = process_output(learners[-1])
    assert codes[-2:] == [0, 0], out + process_output(worker)
    assert f"resumed at iteration {k} from" in out and "previous.ckpt" in out, out
    assert "a checkpoint write that never finished; removed" in out, out
    assert "Traceback" not in out, out
    summary = _summary(run_dir)
    assert summary["iterations"] == iterations
    assert summary["env_steps"] == iterations * 2 * steps, summary  # nothing lost or doubled
    _, final = _checkpoint_state(run_dir)
    assert _assert_consistent(final, steps) == iterations
    record_figure("learner SIGKILL inside an update", recovered_s=round(recovered_update_s, 2),
                  steps_lost=0)  # fmt: skip
    record_figure("learner SIGKILL inside a checkpoint write", checkpoint=name, resumed_at=k,
                  recovered_s=round(recovered_write_s, 2),
                  steps_lost=iterations * 2 * steps - summary["env_steps"])  # fmt: skip


def _check_policy_matches_checkpoint(
    republished: list[tuple[int, int, bytes]], state: dict[str, Any]
) -> None:
    """The resumed learner's first ONNX policies act as the checkpoint's torch policies."""
    import torch

    from cgrpo_ros.core.policy import GaussianPolicy
    from cgrpo_ros.core.policy_artifact import OnnxPolicy

    assert {i for i, _, _ in republished} == {0, 1}, [(i, v) for i, v, _ in republished]
    config = json.loads(state["config_json"])
    obs = np.random.default_rng(0).standard_normal((16, int(state["obs_dim"]))).astype(np.float32)
    for policy_id, _, onnx_bytes in republished:
        torch_policy = GaussianPolicy(
            int(state["obs_dim"]),
            int(state["act_dim"]),
            config["hidden_sizes"],
            config["init_log_std"],
        )
        torch_policy.load_state_dict(state["policies"][policy_id])
        with torch.no_grad():
            expected = torch_policy(torch.from_numpy(obs)).numpy()
        got = OnnxPolicy(onnx_bytes).action_mean(obs)
        assert np.allclose(got, expected, atol=1e-5), (policy_id, got, expected)


def test_corrupt_latest_checkpoint_is_reported_and_previous_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unit level, no DDS: TrainingSession resume after latest.ckpt is truncated."""
    from cgrpo_ros.core.config import CGRPOConfig
    from cgrpo_ros.session import TrainingSession, train_single_process
    from cgrpo_ros.tasks import TaskSpec

    config = CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, epochs=1,
                                     kmeans_n_init=1)  # fmt: skip
    run_dir = tmp_path / "run"
    train_single_process(env_id=ENV_ID, config=config, iterations=2, steps_per_iteration=64,
                         run_dir=run_dir, checkpoint_every=1)  # fmt: skip
    latest = run_dir / "checkpoints" / "latest.ckpt"
    # finish() checkpoints again, so previous.ckpt holds iteration 2 too; which file was
    # used is what `resumed_from` tells.
    assert read_checkpoint(run_dir / "checkpoints" / "previous.ckpt")["iteration"] == 2
    for damage in ("truncate", "flip"):
        data = bytearray(latest.read_bytes())
        if damage == "truncate":
            latest.write_bytes(bytes(data[: len(data) // 2]))
        else:
            data[-100] ^= 0xFF
            latest.write_bytes(bytes(data))
        caplog.clear()
        session = TrainingSession(task=TaskSpec.from_env(ENV_ID), config=config,
                                  run_dir=run_dir, resume=True, tensorboard=False)  # fmt: skip
        assert session.iteration == 2 and session.env_steps == 2 * 2 * 64
        assert session.resumed_from == run_dir / "checkpoints" / "previous.ckpt"
        assert len(session.resume_problems) == 1 and "latest.ckpt" in session.resume_problems[0]
        assert any("latest.ckpt" in r.getMessage() for r in caplog.records), caplog.text
        session.logger.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_clean_shutdown_on_signal(
    ros_env: dict[str, str], tmp_path: Path, signum: signal.Signals
) -> None:
    run_dir, steps = tmp_path / "run", 200
    learner = start_node_process(
        learner_argv(run_dir, iterations=10_000, steps_per_iteration=steps), ros_env
    )
    worker = start_node_process(worker_argv("rollout_worker_0", [0, 1], steps_per_iteration=steps),
                                ros_env)  # fmt: skip
    try:
        with open_probe(ros_env) as probe:
            assert probe.wait_status(lambda s: s.get("iteration", 0) >= 2), process_output(learner)
            worker.send_signal(signum)
            assert probe.wait_exit(worker, 20.0), process_output(worker)
            sent = time.monotonic()
            learner.send_signal(signum)
            assert probe.wait_exit(learner, 60.0), process_output(learner)
            shutdown_s = time.monotonic() - sent
    finally:
        codes = _stop_all(worker, learner)
    out = process_output(learner) + process_output(worker)
    assert codes == [0, 0], out
    assert "Traceback" not in out, out
    summary = _summary(run_dir)
    assert summary["stopped_by"] == signum.name, summary
    _, state = _checkpoint_state(run_dir)
    assert int(state["iteration"]) == summary["iterations"] >= 2
    assert json.loads(state["extra_json"])["env_steps"] == summary["env_steps"]
    assert summary["env_steps"] == summary["iterations"] * 2 * steps
    assert (run_dir / "policy_0.onnx").is_file()
    record_figure(f"{signum.name} to worker and learner", shutdown_s=round(shutdown_s, 2),
                  steps_lost=0)  # fmt: skip
