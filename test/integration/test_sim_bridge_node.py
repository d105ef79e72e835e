"""The sim_bridge node as a real process, driven over DDS like a policy server would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

# test/ holds the shared helpers; harmless once pytest's pythonpath includes it.
from cgrpo_ros.testing.ros_processes import (
    isolated_ros_env,
    probe_node,
    process_output,
    start_node_process,
    stop_process,
    wait_for,
)

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from cgrpo_ros.robot.config import load_robot_config  # noqa: E402

pytestmark = pytest.mark.integration

ROBOT = load_robot_config()
STARTUP_TIMEOUT_S = 30.0  # process start + MuJoCo import + DDS discovery on a loaded machine
STEP_TIMEOUT_S = 5.0


@dataclass
class Probe:
    """The test's side of the graph: what a policy server would have."""

    node: Node
    executor: SingleThreadedExecutor
    states: list[JointState] = field(default_factory=list)
    statuses: list[dict[str, object]] = field(default_factory=list)

    def spin(self, timeout: float) -> None:
        self.executor.spin_once(timeout_sec=timeout)

    def stamp_ns(self, msg: JointState) -> int:
        return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = isolated_ros_env()
    # The test process joins the same isolated graph as the node it starts.
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    return env


@pytest.fixture
def probe(ros_env: dict[str, str]) -> Iterator[Probe]:
    with probe_node(ros_env, "sim_bridge_probe") as (node, executor):
        p = Probe(node=node, executor=executor)
        node.create_subscription(JointState, "joint_states", p.states.append, 10)
        node.create_subscription(
            String, "/sim_bridge/status", lambda m: p.statuses.append(json.loads(m.data)), 10
        )
        yield p


def test_lockstep_bridge_moves_resets_and_rejects(ros_env: dict[str, str], probe: Probe) -> None:
    proc = start_node_process("sim_bridge.node", ros_env, ros_args=["-p", "mode:=lockstep"])
    try:
        # 1. The arm appears at home with the configured joint names and order.
        assert wait_for(lambda: bool(probe.states), STARTUP_TIMEOUT_S, probe.spin), (
            f"no joint_states within {STARTUP_TIMEOUT_S}s; node output:\n{process_output(proc)}"
        )
        first = probe.states[-1]
        assert list(first.name) == list(ROBOT.joint_names)
        np.testing.assert_allclose(first.position, ROBOT.home, atol=1e-3)
        assert len(first.velocity) == len(first.effort) == ROBOT.num_joints

        pub = probe.node.create_publisher(Float64MultiArray, ROBOT.command_topic, 10)
        assert wait_for(lambda: pub.get_subscription_count() > 0, STARTUP_TIMEOUT_S, probe.spin)

        # 2. Lockstep: each command yields one new state, one control period later.
        target = ROBOT.home_array + np.array([0.3, 0.2, -0.2, 0.3, 0.3, -0.3, 0.5])
        for _ in range(75):  # 1.5 s of sim time
            last = probe.stamp_ns(probe.states[-1])
            pub.publish(Float64MultiArray(data=target.tolist()))
            assert wait_for(
                lambda last=last: probe.stamp_ns(probe.states[-1]) > last,
                STEP_TIMEOUT_S,
                probe.spin,
            ), f"no new state after a command; node output:\n{process_output(proc)}"
            new = probe.stamp_ns(probe.states[-1])
            assert new - last == round(ROBOT.control_period_s * 1e9)
        np.testing.assert_allclose(probe.states[-1].position, target, atol=0.02)

        # 3. Reset brings the arm home.
        client = probe.node.create_client(Trigger, "/sim_bridge/reset")
        assert wait_for(client.service_is_ready, STARTUP_TIMEOUT_S, probe.spin)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, STEP_TIMEOUT_S, probe.spin)
        response = future.result()
        assert response is not None and response.success, response
        assert wait_for(
            lambda: np.allclose(probe.states[-1].position, ROBOT.home, atol=1e-6),
            STEP_TIMEOUT_S,
            probe.spin,
        )

        # 4. Malformed commands are counted, never applied, never crash the node.
        before = list(probe.states[-1].position)
        pub.publish(Float64MultiArray(data=[0.1, 0.2, 0.3]))
        pub.publish(Float64MultiArray(data=[float("nan")] * ROBOT.num_joints))
        assert wait_for(
            lambda: bool(probe.statuses) and probe.statuses[-1]["commands_rejected"] == 2,
            STEP_TIMEOUT_S,
            probe.spin,
        ), f"status: {probe.statuses[-1:]}; node output:\n{process_output(proc)}"
        np.testing.assert_allclose(probe.states[-1].position, before, atol=1e-9)
        assert probe.statuses[-1]["mode"] == "lockstep"
        assert proc.poll() is None, process_output(proc)
    finally:
        code = stop_process(proc, timeout=10)
    output = process_output(proc)
    assert code == 0, f"sim_bridge exited with {code}:\n{output}"
    assert "rejected command" in output and "3 values" in output
    assert "Traceback" not in output, output


def test_bad_mode_is_refused_with_a_clear_message(ros_env: dict[str, str]) -> None:
    proc = start_node_process("sim_bridge.node", ros_env, ros_args=["-p", "mode:=turbo"])
    try:
        proc.wait(timeout=STARTUP_TIMEOUT_S)
    finally:
        code = stop_process(proc, timeout=5)
    output = process_output(proc)
    assert code == 2, output
    assert "'mode'" in output and "turbo" in output and "lockstep" in output, output
    assert "Traceback" not in output, output
