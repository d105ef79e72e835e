"""The policy_server with `trusted_keys` as a real process (issue 18): it serves only files
whose detached signature `<file>.sig` is by a trusted key, refuses to start or to hot-reload
anything else naming why, and without keys says at start-up that it runs unsigned policies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cgrpo_ros.testing.ros_processes import (
    probe_node,
    process_output,
    start_node_process,
    stop_process,
    wait_for,
)

rclpy = pytest.importorskip("rclpy")
from server_helpers import (  # noqa: E402
    ROBOT,
    SERVER,
    STARTUP_TIMEOUT_S,
    Probe,
    set_model_path,
    write_constant_model,
)
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from cgrpo_ros.core.policy_artifact import OnnxPolicy  # noqa: E402
from cgrpo_ros.core.signing import SigningKey, generate_key_pair, signature_path  # noqa: E402

pytestmark = pytest.mark.integration


def sign_file(path: Path, key: SigningKey, signed_at_ns: int | None = None) -> Path:
    """`path.sig` as training and `cgrpo export --signing-key` write it."""
    data = path.read_bytes()
    claims = OnnxPolicy(data).metadata.signed_claims()
    signature_path(path).write_bytes(key.sign_policy(data, claims, signed_at_ns=signed_at_ns))
    return path


def flip(path: Path, offset: int, out: Path) -> Path:
    """A copy of `path` with one byte changed (and `path`'s signature copied beside it)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    out.write_bytes(bytes(data))
    if signature_path(path).exists():
        signature_path(out).write_bytes(signature_path(path).read_bytes())
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("signed")
    private, public = generate_key_pair(d / "learner.key")
    rogue_private, _ = generate_key_pair(d / "rogue.key")
    key, rogue = SigningKey.load(private), SigningKey.load(rogue_private)
    target = np.clip(ROBOT.home_array + 0.3, ROBOT.lower, ROBOT.upper).tolist()
    now = time.time_ns()
    good = sign_file(write_constant_model(d / "good.onnx", target), key, now)
    files = {"pub": public, "private": private, "good": good}
    files["newer"] = sign_file(
        write_constant_model(d / "newer.onnx", list(ROBOT.home)), key, now + 1
    )
    files["older"] = sign_file(write_constant_model(d / "older.onnx", target), key, now - 10**9)
    files["unsigned"] = write_constant_model(d / "unsigned.onnx", target)
    files["untrusted"] = sign_file(write_constant_model(d / "untrusted.onnx", target), rogue)
    data = good.read_bytes()
    # One flipped byte in the ONNX graph (a weight), in the ONNX metadata (the task name), and
    # in the signed metadata of the .sig file (the policy version).
    files["onnx_byte"] = flip(good, len(data) // 3, d / "onnx_byte.onnx")
    task = OnnxPolicy(data).metadata.task.encode()
    files["onnx_metadata"] = flip(good, data.index(task) + 2, d / "onnx_metadata.onnx")
    files["sig_metadata"] = d / "sig_metadata.onnx"
    files["sig_metadata"].write_bytes(data)
    envelope = signature_path(good).read_bytes()
    at = envelope.index(b'\\"policy_version\\":') + len(b'\\"policy_version\\":')
    signature_path(files["sig_metadata"]).write_bytes(
        envelope[:at] + bytes([envelope[at] ^ 0x01]) + envelope[at + 1 :]
    )
    bad_mode = d / "world_writable.pub"
    bad_mode.write_bytes(public.read_bytes())
    bad_mode.chmod(0o666)
    files["bad_mode"] = bad_mode
    return files


@pytest.fixture(scope="module")
def ros_env(module_ros_env: dict[str, str]) -> dict[str, str]:
    return module_ros_env  # one server and probe for the module's tests (test/conftest.py)


@pytest.fixture(scope="module")
def probe(ros_env: dict[str, str]) -> Iterator[Probe]:
    with probe_node(ros_env, "signing_server_probe") as (node, executor):
        p = Probe(node=node, executor=executor)
        node.create_subscription(
            String, "/policy_server/status", lambda m: p.statuses.append(json.loads(m.data)), 10
        )
        yield p


def server_args(model: Path, trusted: list[Path]) -> list[str]:
    args = ["-p", f"model_path:={model}", "-p", "status_rate_hz:=20.0"]
    if trusted:
        args += ["-p", f"trusted_keys:={json.dumps([str(p) for p in trusted])}"]
    return args


@pytest.mark.parametrize(
    ("model", "key", "expected"),
    [
        ("unsigned", "pub", ["unsigned.onnx is unsigned", "[unsigned]", "--signing-key"]),
        ("onnx_byte", "pub", ["onnx_byte.onnx", "not the ones signed", "[bad_signature]"]),
        ("onnx_metadata", "pub", ["onnx_metadata.onnx", "not the ones signed"]),
        ("sig_metadata", "pub", ["sig_metadata.onnx", "does not match the content"]),
        ("untrusted", "pub", ["untrusted.onnx is signed by key", "[untrusted_key]"]),
        ("good", "bad_mode", ["parameter 'trusted_keys'", "mode 0666", "chmod go-w"]),
        ("good", "private", ["parameter 'trusted_keys'", "holds a private key"]),
    ],
)
def test_refuses_to_start_naming_why(
    ros_env: dict[str, str], setup: dict[str, Path], model: str, key: str, expected: list[str]
) -> None:
    proc = start_node_process(SERVER, ros_env, ros_args=server_args(setup[model], [setup[key]]))
    try:
        proc.wait(timeout=STARTUP_TIMEOUT_S)
    finally:
        code = stop_process(proc, timeout=5)
    output = process_output(proc)
    assert code == 2 and "refusing to start" in output, output
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"
    assert "Traceback" not in output, output


def start(ros_env: dict[str, str], probe: Probe, model: Path, trusted: list[Path]) -> object:
    probe.statuses.clear()
    proc = start_node_process(SERVER, ros_env, ros_args=server_args(model, trusted))
    if not wait_for(lambda: bool(probe.statuses), STARTUP_TIMEOUT_S, probe.spin):
        stop_process(proc)
        raise AssertionError(f"policy server did not start:\n{process_output(proc)}")
    return proc


def test_hot_reload_accepts_only_newer_trusted_signatures(
    ros_env: dict[str, str], setup: dict[str, Path], probe: Probe
) -> None:
    key_id = SigningKey.load(setup["private"]).key_id
    proc = start(ros_env, probe, setup["good"], [setup["pub"]])
    try:
        assert probe.status()["policy"]["signed_by"] == key_id
        refusals = {
            "onnx_byte": "not the ones signed",
            "onnx_metadata": "not the ones signed",
            "sig_metadata": "does not match the content",
            "untrusted": "[untrusted_key]",
            "unsigned": "[unsigned]",
            "older": "[replayed]",
            "good": "[replayed]",  # the very file being served, again: not newer
        }
        for name, reason in refusals.items():
            set_model_path(probe, setup[name])
            reply = probe.call(Trigger, "/policy_server/reload", Trigger.Request())
            assert not reply.success, (name, reply.message)
            assert "reload refused, still serving" in reply.message and reason in reply.message, (
                name,
                reply.message,
            )
        set_model_path(probe, setup["newer"])
        reply = probe.call(Trigger, "/policy_server/reload", Trigger.Request())
        assert reply.success, reply.message
        assert wait_for(
            lambda: probe.status()["policy"]["path"] == str(setup["newer"]), 5.0, probe.spin
        )
        status = probe.status()
        assert status["faults"]["reloads_refused"] == len(refusals)
        assert status["policy"]["signed_by"] == key_id and status["reloads"] == 1
        assert proc.poll() is None, process_output(proc)
    finally:
        code = stop_process(proc, timeout=10)
    output = process_output(proc)
    assert code == 0 and "Traceback" not in output, output
    assert f"serving only policies signed by {key_id}" in output, output


def test_without_keys_it_says_it_runs_unsigned_policies(
    ros_env: dict[str, str], setup: dict[str, Path], probe: Probe
) -> None:
    proc = start(ros_env, probe, setup["unsigned"], [])
    try:
        assert probe.status()["policy"]["signed_by"] is None
    finally:
        code = stop_process(proc, timeout=10)
    output = process_output(proc)
    assert code == 0, output
    assert "running UNSIGNED policies: no trusted_keys" in output, output
