"""The policy_server node as a real process over isolated DDS, fed bad inputs on purpose.

The test plays the robot driver: it publishes /joint_states itself (reordered, partial, NaN,
stale) and records every command the server sends, then checks each one against the limits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from sensor_msgs.msg import JointState  # noqa: E402
from server_helpers import (  # noqa: E402
    DT,
    FINGERTIP_TASK,
    FINGERTIP_TASK_SPEC,
    JOINT_TASK_SPEC,
    ROBOT,
    SERVER,
    STARTUP_TIMEOUT_S,
    STEP_TIMEOUT_S,
    TASK,
    Probe,
    set_model_path,
    write_constant_model,
)
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ros_env(module_ros_env: dict[str, str]) -> dict[str, str]:
    return module_ros_env  # one server and probe for the module's tests (test/conftest.py)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    target = np.clip(ROBOT.home_array + 0.3, ROBOT.lower, ROBOT.upper).tolist()
    joints = list(ROBOT.joint_names)
    renamed = [*joints[:-1], "wrist_roll"]
    (d / "corrupt.onnx").write_bytes(b"\x08\x07this is not an onnx protobuf" * 10)
    return {
        "good": write_constant_model(d / "good.onnx", target),
        "other": write_constant_model(d / "other.onnx", list(ROBOT.home)),
        "nan": write_constant_model(d / "nan.onnx", [float("nan")] * ROBOT.num_joints),
        "corrupt": d / "corrupt.onnx",
        "missing": d / "missing.onnx",
        "wrong_size": write_constant_model(
            d / "wrong_size.onnx",
            target[:6],
            obs_names=[f"joint_pos/{j}" for j in joints[:6]],
            action_names=joints[:6],
            action_low=JOINT_TASK_SPEC.action_low[:6],
            action_high=JOINT_TASK_SPEC.action_high[:6],
        ),
        "wrong_joint": write_constant_model(
            d / "wrong_joint.onnx",
            target,
            obs_names=[n.replace(joints[-1], "wrist_roll") for n in TASK.observation_names()],
            action_names=renamed,
        ),
        "reordered": write_constant_model(
            d / "reordered.onnx", target, action_names=[joints[1], joints[0], *joints[2:]]
        ),
        "fingertip_x": write_constant_model(
            d / "fingertip_x.onnx",
            [1.0, 0.0, 0.0],
            FINGERTIP_TASK_SPEC,
        ),
    }


@pytest.fixture(scope="module")
def probe(ros_env: dict[str, str]) -> Iterator[Probe]:
    with probe_node(ros_env, "policy_server_probe") as (node, executor):
        p = Probe(node=node, executor=executor)
        node.create_subscription(
            Float64MultiArray,
            ROBOT.command_topic,
            lambda m: p.commands.append((time.monotonic(), list(m.data))),
            100,
        )
        node.create_subscription(
            String, "/policy_server/status", lambda m: p.statuses.append(json.loads(m.data)), 10
        )
        pub = node.create_publisher(JointState, "/joint_states", 10)

        def publish_state() -> None:
            if p.state is not None:
                pub.publish(p.state)

        node.create_timer(0.01, publish_state)
        yield p


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("missing", ["missing.onnx", "does not exist"]),
        ("corrupt", ["corrupt.onnx", "not a valid ONNX model"]),
        ("wrong_size", ["action size", "6 joints", "joint7"]),
        ("wrong_joint", ["wrist_roll", "joint7"]),
        ("reordered", ["joint order differs"]),
    ],
)
def test_bad_models_refuse_to_start(
    ros_env: dict[str, str], models: dict[str, Path], model: str, expected: list[str]
) -> None:
    proc = start_node_process(SERVER, ros_env, ros_args=["-p", f"model_path:={models[model]}"])
    try:
        proc.wait(timeout=STARTUP_TIMEOUT_S)
    finally:
        code = stop_process(proc, timeout=5)
    output = process_output(proc)
    assert code == 2, output
    assert "refusing to start" in output, output
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"
    assert "Traceback" not in output, output


def joint_state(names: list[str], q: dict[str, float], qd: float = 0.0) -> JointState:
    msg = JointState(name=names)
    msg.position = [q[n] for n in names]
    msg.velocity = [qd] * len(names)
    return msg


def assert_within_limits(commands: list[list[float]]) -> None:
    """Every command finite, inside the bounds; consecutive steps inside v·dt and a·dt²."""
    c = np.asarray(commands)
    assert np.isfinite(c).all()
    assert (c >= ROBOT.lower - 1e-12).all() and (c <= ROBOT.upper + 1e-12).all()
    steps = np.diff(c, axis=0)
    v_step = np.asarray(ROBOT.velocity_limit) * DT
    assert (np.abs(steps) <= v_step * (1 + 1e-9) + 1e-12).all(), np.abs(steps).max(axis=0)
    a_step = np.asarray(ROBOT.acceleration_limit) * DT * DT
    assert (np.abs(np.diff(steps, axis=0)) <= a_step * (1 + 1e-6) + 1e-9).all()


# Every serving test runs in both control modes (issue 15): ticks on joint-state arrival
# (capped at the rate, timer fallback) and ticks on a timer.
CONTROL_MODES = ["event", "timer"]


def start_server(
    ros_env: dict[str, str],
    probe: Probe,
    model: Path,
    *,
    blend_time_s: float,
    control_mode: str,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """A policy server serving `model`, started and seen publishing its status."""
    args = ["-p", f"model_path:={model}", "-p", f"blend_time_s:={blend_time_s}"]
    args += ["-p", "goal:=[0.45, 0.0, 0.4]", "-p", "status_rate_hz:=20.0"]
    args += ["-p", f"control_mode:={control_mode}"]
    for item in extra:
        args += ["-p", item]
    proc = start_node_process(SERVER, ros_env, ros_args=args)
    if not wait_for(lambda: bool(probe.statuses), STARTUP_TIMEOUT_S, probe.spin):
        stop_process(proc)
        raise AssertionError(f"policy server did not start:\n{process_output(proc)}")
    return proc


@pytest.mark.parametrize("control_mode", CONTROL_MODES)
def test_serves_safely_through_bad_inputs(
    ros_env: dict[str, str], models: dict[str, Path], probe: Probe, control_mode: str
) -> None:
    joints = list(ROBOT.joint_names)
    pose = dict(zip(joints, ROBOT.home, strict=True))
    probe.commands.clear()
    probe.statuses.clear()
    proc = start_server(ros_env, probe, models["good"], blend_time_s=0.5, control_mode=control_mode)
    # Commands the previous test's server sent may still wait in the probe's reader: this
    # server is up (its status arrived), so anything received so far is not its.
    probe.run_for(0.3)
    probe.commands.clear()
    probe.statuses.clear()
    assert wait_for(lambda: bool(probe.statuses), STEP_TIMEOUT_S, probe.spin)
    try:
        # 1. Nothing is published before a valid joint state; a partial one is not valid.
        probe.state = joint_state([j for j in joints if j != "joint3"], pose)
        probe.run_for(0.5)
        assert not probe.commands, probe.commands[:3]
        # Not a fault (another publisher may send joint3, issue 19): the server waits for it.
        assert not probe.status()["started"], probe.status()
        assert "joint3" in probe.status()["last_error"]

        # 2. Reordered with an extra joint: the hold command is the pose, by name.
        names = ["gripper", *reversed(joints)]
        probe.state = joint_state(names, {**pose, "gripper": 0.04})
        assert wait_for(lambda: len(probe.commands) > 5, STEP_TIMEOUT_S, probe.spin)
        np.testing.assert_allclose(probe.commands[-1][1], ROBOT.home, atol=1e-12)
        assert probe.status()["mode"] == "disabled"
        assert probe.status()["control_mode"] == control_mode

        # 3. Enable: the policy target is reached smoothly through the limiter.
        assert probe.call(SetBool, "/policy_server/enable", SetBool.Request(data=True)).success
        target = np.clip(ROBOT.home_array + 0.3, ROBOT.lower, ROBOT.upper)
        assert wait_for(
            lambda: np.allclose(probe.commands[-1][1], target, atol=1e-4), 5.0, probe.spin
        ), probe.commands[-1]

        # 4. NaN in the observation: held, counted, never published.
        probe.state = joint_state(names, {**pose, "gripper": 0.0}, qd=float("nan"))
        assert wait_for(
            lambda: probe.status()["holds"].get("nonfinite_observation", 0) > 3, 3.0, probe.spin
        ), probe.status()

        # 5. Stale: no joint states for a while -> held, counted, status says stale.
        probe.state = None
        assert wait_for(
            lambda: (
                probe.status()["holds"].get("stale_observation", 0) > 5 and probe.status()["stale"]
            ),
            3.0,
            probe.spin,
        ), probe.status()
        probe.state = joint_state(names, {**pose, "gripper": 0.0})

        # 6. E-stop latches: enable is refused until reset.
        assert probe.call(Trigger, "/policy_server/estop", Trigger.Request()).success
        refused = probe.call(SetBool, "/policy_server/enable", SetBool.Request(data=True))
        assert not refused.success and "reset_estop" in refused.message
        # The status can report the latched mode before the next tick has held once (in
        # event mode a tick waits for a joint state): wait for the hold to be counted.
        assert wait_for(lambda: probe.status().get("mode") == "estop", 2.0, probe.spin)
        assert wait_for(lambda: probe.status()["holds"].get("estop", 0) > 0, 2.0, probe.spin), (
            probe.status()
        )
        assert probe.call(Trigger, "/policy_server/reset_estop", Trigger.Request()).success
        assert probe.call(SetBool, "/policy_server/enable", SetBool.Request(data=True)).success

        # 7. A bad model on reload is refused; the running policy goes on undisturbed.
        before = probe.status()["policy"]["path"]
        set_model_path(probe, models["corrupt"])
        reply = probe.call(Trigger, "/policy_server/reload", Trigger.Request())
        assert not reply.success and "not a valid ONNX model" in reply.message, reply.message
        set_model_path(probe, models["wrong_joint"])
        reply = probe.call(Trigger, "/policy_server/reload", Trigger.Request())
        assert not reply.success and "wrist_roll" in reply.message, reply.message
        count = len(probe.commands)
        probe.run_for(0.5)
        assert len(probe.commands) - count >= 15  # still ticking at 50 Hz
        np.testing.assert_allclose(probe.commands[-1][1], target, atol=1e-4)
        assert probe.status()["policy"]["path"] == before
        assert probe.status()["faults"]["reloads_refused"] == 2

        # 8. A model that outputs NaN is caught at every tick; then a good reload works.
        set_model_path(probe, models["nan"])
        assert probe.call(Trigger, "/policy_server/reload", Trigger.Request()).success
        assert wait_for(
            lambda: probe.status()["holds"].get("nonfinite_action", 0) > 3, 3.0, probe.spin
        )
        set_model_path(probe, models["other"])
        assert probe.call(Trigger, "/policy_server/reload", Trigger.Request()).success
        assert wait_for(
            lambda: np.allclose(probe.commands[-1][1], ROBOT.home, atol=1e-4), 5.0, probe.spin
        )
        assert proc.poll() is None, process_output(proc)
    finally:
        probe.state = None
        code = stop_process(proc, timeout=10)
    output = process_output(proc)
    assert code == 0, output
    assert "Traceback" not in output, output
    assert_within_limits([c for _, c in probe.commands])


@pytest.mark.parametrize("control_mode", CONTROL_MODES)
def test_fingertip_policy_steps_the_fingertip_within_the_joint_limits(
    ros_env: dict[str, str], models: dict[str, Path], probe: Probe, control_mode: str
) -> None:
    """A fingertip_delta policy asking for +x: joint commands whose fingertip moves along +x
    (damped least squares from the last command, as in training), rate-limited as always."""
    joints = list(ROBOT.joint_names)
    pose = dict(zip(joints, ROBOT.home, strict=True))
    probe.commands.clear()
    probe.statuses.clear()
    proc = start_server(
        ros_env, probe, models["fingertip_x"], blend_time_s=0.0, control_mode=control_mode
    )
    probe.run_for(0.3)  # as above: drop what an earlier server sent
    probe.commands.clear()
    probe.statuses.clear()
    assert wait_for(lambda: bool(probe.statuses), STEP_TIMEOUT_S, probe.spin)
    try:
        probe.state = joint_state(joints, pose)
        assert wait_for(lambda: len(probe.commands) > 5, STEP_TIMEOUT_S, probe.spin)
        assert probe.call(SetBool, "/policy_server/enable", SetBool.Request(data=True)).success
        start = len(probe.commands) - 1
        assert wait_for(lambda: len(probe.commands) > start + 12, STEP_TIMEOUT_S, probe.spin)
        # Each command is ReachTask.joint_target of the last one, rate-limited: replayed here
        # from home (the hold before enabling is at rest).
        limiter = ROBOT.command_limiter()
        limiter.reset(ROBOT.home_array)
        enabled = [c for _, c in probe.commands[start:]]
        while np.allclose(enabled[0], ROBOT.home, atol=1e-12):  # ticks before the enable
            enabled.pop(0)
        for command in enabled[:10]:
            target = FINGERTIP_TASK.joint_target([1.0, 0.0, 0.0], limiter.last_command)
            np.testing.assert_allclose(command, limiter.limit(target, DT), atol=1e-9)
        # The fingertip went mostly along +x. (Open loop, the per-joint acceleration limits
        # bend the path while the joints speed up; a trained policy corrects from the
        # fingertip it observes.)
        moved = FINGERTIP_TASK.fingertip(enabled[9]) - FINGERTIP_TASK.fingertip(ROBOT.home_array)
        assert moved[0] > 0.02 and moved[0] > 1.5 * abs(moved[2]) and abs(moved[1]) < 1e-6, moved
        assert probe.status()["mode"] == "enabled", probe.status()
    finally:
        probe.state = None
        code = stop_process(proc, timeout=10)
    output = process_output(proc)
    assert code == 0 and "Traceback" not in output, output
    assert_within_limits([c for _, c in probe.commands])


@contextmanager
def cpu_hogs(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` processes spinning a core each, killed on exit whatever happened."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


@pytest.mark.parametrize("control_mode", CONTROL_MODES)
def test_commands_stay_within_the_limits_under_cpu_load(
    ros_env: dict[str, str], models: dict[str, Path], control_mode: str
) -> None:
    """500 Hz with both cores busy (two spinning processes beside a 500 Hz robot): late and
    skipped ticks, but every published command still within v·dt, a·dt² and the bounds of
    the one before it, through enable, disable, e-stop and re-enable while moving.

    Consecutive commands are told apart by their DDS publication sequence numbers, so a
    command the probe itself missed under load is never mistaken for a jump."""
    rate = 500.0
    dt = 1.0 / rate
    commands: list[tuple[int, list[float]]] = []
    statuses: list[dict[str, Any]] = []
    robot = subprocess.Popen(
        [sys.executable, "-m", "cgrpo_ros.testing.joint_state_publisher",
         "--rate", str(rate), "--seconds", "120"],
        env=ros_env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    server = start_node_process(
        SERVER,
        ros_env,
        ros_args=[
            *("-p", f"model_path:={models['good']}", "-p", f"control_rate_hz:={rate}"),
            *("-p", f"control_mode:={control_mode}", "-p", "blend_time_s:=0.0"),
            *("-p", "status_rate_hz:=5.0", "-p", "goal:=[0.45, 0.0, 0.4]"),
        ],
    )
    try:
        with probe_node(ros_env, f"load_probe_{control_mode}") as (node, executor):
            p = Probe(node=node, executor=executor)

            def on_command(msg: Float64MultiArray, info: Any) -> None:
                commands.append((int(info["publication_sequence_number"]), list(msg.data)))

            node.create_subscription(Float64MultiArray, ROBOT.command_topic, on_command, 10000)
            node.create_subscription(
                String, "/policy_server/status", lambda m: statuses.append(json.loads(m.data)), 10
            )
            assert wait_for(
                lambda: bool(statuses) and statuses[-1]["started"], STARTUP_TIMEOUT_S, p.spin
            ), process_output(server)
            estopped = False
            with cpu_hogs(2):
                for service, request, seconds in [
                    (SetBool, SetBool.Request(data=True), 1.0),  # blend 0: at the limits
                    (SetBool, SetBool.Request(data=False), 0.5),  # hold while moving: brake
                    (SetBool, SetBool.Request(data=True), 0.3),
                    (Trigger, Trigger.Request(), 0.5),  # e-stop while moving
                    (Trigger, Trigger.Request(), 0.1),  # reset
                    (SetBool, SetBool.Request(data=True), 1.0),
                ]:
                    name = {SetBool: "/policy_server/enable"}.get(service)
                    if service is Trigger:
                        # E-stop, then reset: alternating by the calls made, not by the last
                        # status, which under this load can still predate the e-stop.
                        name = "/policy_server/reset_estop" if estopped else "/policy_server/estop"
                        estopped = not estopped
                    reply = p.call(service, name, request)
                    assert reply.success, (name, reply.message)
                    p.run_for(seconds)
                    if estopped:  # under this load a tick can take long: wait for the hold
                        assert wait_for(
                            lambda: statuses[-1]["holds"].get("estop", 0) > 0, 10.0, p.spin
                        ), statuses[-1]
                p.run_for(0.5)
            status = statuses[-1]
            assert server.poll() is None, process_output(server)
    finally:
        robot.terminate()
        robot.wait(timeout=10)
        code = stop_process(server, timeout=10)
    assert code == 0, process_output(server)
    sequence = np.array([s for s, _ in commands])
    c = np.array([c for _, c in commands])
    assert c.shape[0] > 500, c.shape
    assert np.isfinite(c).all()
    assert (c >= ROBOT.lower - 1e-12).all() and (c <= ROBOT.upper + 1e-12).all()
    # Steps and second differences only between commands the server sent one after another.
    consecutive = np.diff(sequence) == 1
    assert consecutive.mean() > 0.9, f"the probe missed {np.sum(~consecutive)} commands"
    steps = np.diff(c, axis=0)
    v_step = np.asarray(ROBOT.velocity_limit) * dt
    assert (np.abs(steps[consecutive]) <= v_step * (1 + 1e-9) + 1e-12).all()
    both = consecutive[1:] & consecutive[:-1]
    a_step = np.asarray(ROBOT.acceleration_limit) * dt * dt
    assert (np.abs(np.diff(steps, axis=0)[both]) <= a_step * (1 + 1e-6) + 1e-9).all()
    # It did move at the limits: the check above had something to check.
    assert np.abs(c - ROBOT.home_array).max() > 0.1
    assert sum(status["limiting"]["velocity_count"].values()) > 0, status["limiting"]
    assert status["holds"].get("estop", 0) > 0 and status["holds"].get("disabled", 0) > 0
