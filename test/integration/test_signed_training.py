"""Signed policy and trajectory frames between real learner and worker processes (issue 18).

The test plays an attacker on the DDS domain: it publishes policy frames carrying a valid ONNX
model with a higher version (unsigned, signed by a key nobody trusts, a genuine signature on
tampered bytes, a genuine signature under a forged header, and a genuine but older frame
replayed), and trajectory frames that are unsigned, untrusted or tampered. A worker that
trusts the learner's key and a learner that trusts the workers' key must refuse and count
every one, by reason, and training must finish on the real policies and batches.

The test is also the worker of policy 1 (it signs its batches with the worker key): the
learner then waits for the test at every iteration, so each forged frame arrives at a known
point of the run instead of racing it. A control without keys shows the same forged frame
*is* run by a worker that trusts nobody (today's behaviour), so the refusal is the keys' doing.
"""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from cgrpo_ros.testing.ros_processes import (
    process_output,
    run_to_exit,
    start_node_process,
    stop_process,
    wait_for,
)

rclpy = pytest.importorskip("rclpy")
from stack_helpers import ENV_ID, Probe, latched, learner_argv, make_batch, open_probe, worker_argv  # noqa: E402  # noqa: E402
from std_msgs.msg import UInt8MultiArray  # noqa: E402

from cgrpo_ros.core.onnx_export import export_policy_onnx  # noqa: E402
from cgrpo_ros.core.policy import GaussianPolicy  # noqa: E402
from cgrpo_ros.core.signing import SigningKey, generate_key_pair  # noqa: E402
from cgrpo_ros.tasks import TaskSpec  # noqa: E402
from cgrpo_ros.wire.frame import WireFormatError, from_uint8_msg, to_uint8_msg  # noqa: E402
from cgrpo_ros.wire.policy import DecodedPolicy, decode_policy, encode_policy  # noqa: E402
from cgrpo_ros.wire.trajectory import encode_trajectory  # noqa: E402

pytestmark = pytest.mark.integration

STEPS = 64
ITERATIONS = 3
FORGED_VERSION = 99
WAIT_S = 45.0  # process start (torch, MuJoCo, onnxruntime) + discovery on a loaded machine
PACE_S = 0.1


def forged_model(version: int) -> bytes:
    """A valid ONNX policy for the task (what an attacker can make without any key)."""
    task = TaskSpec.from_env(ENV_ID)
    policy = GaussianPolicy(task.obs_dim, task.act_dim, (8,), 0.0)
    return export_policy_onnx(policy, task.policy_metadata(0, version))


def policy_frame(onnx: bytes, version: int, signature: bytes | None) -> bytes:
    return encode_policy(onnx, policy_id=0, policy_version=version, num_policies=2,
                         signature=signature)  # fmt: skip


def trajectory(
    version: int, seq: int, key: SigningKey | None, worker: str = "test_worker"
) -> bytes:
    return encode_trajectory(make_batch(STEPS), policy_id=1, policy_version=version,
                             worker_id=worker,
                             seq=seq, task=ENV_ID,
                             sign=None if key is None else key.sign_frame)  # fmt: skip


def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("learner", "worker", "rogue"):
        private, public = generate_key_pair(tmp_path / f"{name}.key")
        out[name], out[f"{name}.pub"] = private, public
    return out


def worker_rejected(probe: Probe, worker_id: str) -> dict[str, int]:
    mine = [s for s in probe.worker_status if s["worker_id"] == worker_id]
    return mine[-1].get("rejected", {}) if mine else {}


def test_worker_refuses_forged_policy_frames_and_training_goes_on_signed(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    k = keys(tmp_path)
    worker_key = SigningKey.load(k["worker"])
    rogue = SigningKey.load(k["rogue"])
    run_dir = tmp_path / "run"
    learner = start_node_process(
        learner_argv(run_dir, iterations=ITERATIONS, steps_per_iteration=STEPS,
                     signing_key=str(k["learner"]),
                     trusted_worker_keys=[str(k["worker.pub"])]),
        ros_env,
    )  # fmt: skip
    worker = start_node_process(
        worker_argv("rollout_worker_0", [0], steps_per_iteration=STEPS,
                    trusted_keys=[str(k["learner.pub"])], signing_key=str(k["worker"])),
        ros_env,
    )  # fmt: skip
    genuine: list[DecodedPolicy] = []
    try:
        with open_probe(ros_env, "signing_probe") as probe:

            def keep(msg: UInt8MultiArray) -> None:
                with contextlib.suppress(WireFormatError):  # the test's own forged frames
                    genuine.append(decode_policy(from_uint8_msg(msg)))

            probe.node.create_subscription(UInt8MultiArray, "/cgrpo/policies", keep, latched(8))
            attacker = probe.node.create_publisher(UInt8MultiArray, "/cgrpo/policies", latched(8))
            batches = probe.node.create_publisher(UInt8MultiArray, "/cgrpo/trajectories", 10)

            def send(pub: Any, frames: list[bytes]) -> None:
                for frame in frames:
                    pub.publish(to_uint8_msg(frame))
                    probe.spin(PACE_S)

            def version_seen(version: int) -> DecodedPolicy | None:
                return next(
                    (p for p in genuine if p.policy_id == 0 and p.policy_version == version), None
                )

            assert wait_for(
                lambda: (
                    version_seen(0) is not None
                    and any(s["worker_id"] == "rollout_worker_0" for s in probe.worker_status)
                    and attacker.get_subscription_count() > 1
                    and batches.get_subscription_count() > 0
                    and bool(probe.status())
                ),
                WAIT_S,
                probe.spin,
            ), process_output(learner) + process_output(worker)
            real = version_seen(0)
            assert real is not None and real.signature is not None
            assert json.loads(real.signature)["key_id"] == SigningKey.load(k["learner"]).key_id

            # 1. Forged policy frames, each with a valid ONNX model and a higher version.
            model = forged_model(FORGED_VERSION)
            tampered = bytearray(real.onnx_bytes)
            tampered[len(tampered) // 2] ^= 1
            send(attacker, [
                policy_frame(model, FORGED_VERSION, None),
                policy_frame(model, FORGED_VERSION, rogue.sign_policy(model, {})),
                policy_frame(bytes(tampered), real.policy_version, real.signature),
                policy_frame(real.onnx_bytes, FORGED_VERSION, real.signature),
            ])  # fmt: skip
            # 2. Forged trajectories to the learner (the real worker key signs the good ones).
            good = trajectory(0, 1, worker_key)
            flipped = bytearray(good)
            (header_len,) = struct.unpack_from("<I", good, 6)
            flipped[10 + header_len] ^= 1  # lowest mantissa bit of obs[0, 0]: still a valid batch
            send(batches, [trajectory(0, 90, None), trajectory(0, 91, rogue), bytes(flipped)])
            expected_worker = {"unsigned": 1, "untrusted_key": 1, "bad_signature": 1,
                               "claims_mismatch": 1}  # fmt: skip
            assert wait_for(
                lambda: worker_rejected(probe, "rollout_worker_0") == expected_worker,
                20.0,
                probe.spin,
            ), f"{worker_rejected(probe, 'rollout_worker_0')}\n{process_output(worker)}"
            expected_learner = {"unsigned": 1, "untrusted_key": 1, "bad_signature": 1}
            assert probe.wait_status(lambda s: s.get("rejected") == expected_learner, 20.0), (
                f"{probe.status()}\n{process_output(learner)}"
            )
            assert probe.status()["iteration"] == 0  # the forged batches did not count

            # 3. The good batch of version 0; then the genuine version-0 frame replayed.
            send(batches, [good])
            assert wait_for(lambda: version_seen(1) is not None, WAIT_S, probe.spin)
            assert wait_for(
                lambda: any(s["versions"].get("0") == 1 for s in probe.worker_status
                            if s["worker_id"] == "rollout_worker_0"),
                WAIT_S, probe.spin,
            ), process_output(worker)  # fmt: skip
            send(attacker, [policy_frame(real.onnx_bytes, 0, real.signature)])
            expected_worker["replayed"] = 1
            assert wait_for(
                lambda: worker_rejected(probe, "rollout_worker_0") == expected_worker,
                20.0,
                probe.spin,
            ), f"{worker_rejected(probe, 'rollout_worker_0')}\n{process_output(worker)}"
            probe.node.destroy_publisher(attacker)  # latched frames must not outlive the test

            # 4. The rest of the run, paced by the test's own signed batches.
            for version in range(1, ITERATIONS):
                assert probe.wait_status(lambda s, v=version: s.get("iteration") == v, WAIT_S)
                send(batches, [trajectory(version, 1 + version, worker_key)])
            assert probe.wait_exit(learner, WAIT_S * 2), process_output(learner)
            assert probe.wait_exit(worker, 20.0), process_output(worker)
            acted = [s["versions"].get("0") for s in probe.worker_status
                     if s["worker_id"] == "rollout_worker_0"]  # fmt: skip
    finally:
        codes = [stop_process(p) for p in (worker, learner)]
    out = process_output(learner) + process_output(worker)
    assert codes == [0, 0], out
    assert "Traceback" not in out, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == ITERATIONS
    assert summary["env_steps"] == ITERATIONS * 2 * STEPS
    # Only the forged trajectories were refused: the worker never acted with the forged
    # version (its batches would have come back as `future_version`) nor the replayed one.
    assert summary["rejected"] == expected_learner, summary["rejected"]
    assert FORGED_VERSION not in acted and max(v for v in acted if v is not None) == 2, acted
    assert sorted(set(summary["worker_ids"])) == ["rollout_worker_0", "test_worker"]
    # Every run file is signed by the learner's key (cgrpo verify, as an operator would).
    from cgrpo_ros.cli import main as cgrpo_main

    for name in ("policy_0.onnx", "policy_1.onnx", "best.onnx"):
        assert (run_dir / f"{name}.sig").is_file(), name
        assert cgrpo_main(["verify", str(run_dir / name), "--trusted-keys",
                           str(k["learner.pub"])]) == 0  # fmt: skip
    # Refusals are logged once per reason and interval, not once per frame.
    assert 1 <= process_output(worker).count("rejected policy frame (") <= 5


def test_without_keys_the_same_forged_frame_is_run(ros_env: dict[str, str]) -> None:
    """Today's behaviour, unchanged without keys: the control for the test above."""
    worker = start_node_process(
        worker_argv("rollout_worker_0", [0], steps_per_iteration=STEPS), ros_env
    )
    try:
        with open_probe(ros_env, "control_probe") as probe:
            attacker = probe.node.create_publisher(UInt8MultiArray, "/cgrpo/policies", latched(2))
            assert wait_for(
                lambda: attacker.get_subscription_count() > 1 and bool(probe.worker_status),
                WAIT_S, probe.spin,
            ), process_output(worker)  # fmt: skip
            attacker.publish(to_uint8_msg(policy_frame(forged_model(FORGED_VERSION),
                                                       FORGED_VERSION, None)))  # fmt: skip
            assert wait_for(
                lambda: any(s.get("versions", {}).get("0") == FORGED_VERSION
                            for s in probe.worker_status),
                20.0, probe.spin,
            ), process_output(worker)  # fmt: skip
            probe.node.destroy_publisher(attacker)
    finally:
        stop_process(worker)
    assert "runs UNSIGNED policies (no trusted_keys)" in process_output(worker)


@pytest.mark.parametrize("node", ["learner", "rollout_worker"])
def test_bad_key_files_stop_the_node_with_a_clear_error(
    ros_env: dict[str, str], tmp_path: Path, node: str
) -> None:
    """A private key others can read (learner) or a trusted key that is not a public key
    (worker): exit code 2, one line naming the parameter, the file and the fix."""
    k = keys(tmp_path)
    if node == "learner":
        k["learner"].chmod(0o644)
        argv = learner_argv(tmp_path / "run", signing_key=str(k["learner"]))
        expected = [f"parameter 'signing_key': signing key file {k['learner']} has mode 0644",
                    "chmod 600"]  # fmt: skip
    else:
        junk = tmp_path / "junk.pub"
        junk.write_text("not a key\n")
        argv = worker_argv("rollout_worker_0", [0], trusted_keys=[str(k["learner.pub"]), str(junk)])
        expected = [f"parameter 'trusted_keys': trusted key file {junk} is not a PEM public key"]
    code, out = run_to_exit(argv, ros_env, WAIT_S)
    assert code == 2 and "Traceback" not in out, out
    for text in expected:
        assert text in out, out
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_resumed_learner_older_version_newer_signature_is_taken(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    """Replays are ordered by signing time, not by version: a learner killed after publishing
    version 3 and resumed from its version-2 checkpoint republishes version 2 with a new
    signature, and a worker holding version 3 must take it (docs/security.md, replay rule)."""
    k = keys(tmp_path)
    worker_key = SigningKey.load(k["worker"])
    run_dir = tmp_path / "run"
    iterations = 4

    def start_learner(resume: bool) -> Any:
        argv = learner_argv(run_dir, iterations=iterations, steps_per_iteration=STEPS,
                            checkpoint_every=2, resume=resume, signing_key=str(k["learner"]),
                            trusted_worker_keys=[str(k["worker.pub"])])  # fmt: skip
        return start_node_process(argv, ros_env)

    learner = start_learner(resume=False)
    worker = start_node_process(
        worker_argv("rollout_worker_0", [0], steps_per_iteration=STEPS,
                    trusted_keys=[str(k["learner.pub"])], signing_key=str(k["worker"])),
        ros_env,
    )  # fmt: skip
    seq = iter(range(1, 100))
    try:
        with open_probe(ros_env, "resume_probe") as probe:
            batches = probe.node.create_publisher(UInt8MultiArray, "/cgrpo/trajectories", 10)

            def acting() -> list[int]:
                return [s["versions"]["0"] for s in probe.worker_status
                        if s["worker_id"] == "rollout_worker_0" and s["versions"].get("0")
                        is not None]  # fmt: skip

            def play(version: int) -> None:
                """Wait for the learner at `version`, then send the test's batch of policy 1."""
                assert probe.wait_status(lambda s: s.get("iteration") == version, WAIT_S), (
                    probe.status(), process_output(learner))  # fmt: skip
                assert wait_for(lambda: batches.get_subscription_count() > 0, WAIT_S, probe.spin)
                batches.publish(to_uint8_msg(trajectory(version, next(seq), worker_key)))

            for version in range(3):
                play(version)
            assert wait_for(lambda: 3 in acting(), WAIT_S, probe.spin), process_output(worker)
            learner.kill()  # version 3 published, the last checkpoint is version 2
            learner.wait(timeout=10)
            probe.learner_status.clear()
            learner = start_learner(resume=True)
            for version in range(2, iterations):
                play(version)
            assert probe.wait_exit(learner, WAIT_S * 2), process_output(learner)
            assert probe.wait_exit(worker, 20.0), process_output(worker)
            seen = acting()
    finally:
        codes = [stop_process(p) for p in (worker, learner)]
    out = process_output(learner) + process_output(worker)
    assert codes == [0, 0], out
    # The worker went back from version 3 to the resumed version 2, and refused nothing.
    assert 2 in seen[seen.index(3) :], seen
    assert worker_rejected(probe, "rollout_worker_0") == {}, probe.worker_status[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == iterations
    assert summary["env_steps"] == iterations * 2 * STEPS
