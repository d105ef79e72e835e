"""The deploy stack's end-to-end check, shared by `cgrpo deploy --use-sim` (CI,
test/integration/test_cgrpo_deploy.py) and `deploy.launch.py use_sim:=true` (launch_testing,
test/launch/test_deploy_launch.py): the same model (cgrpo_ros/testing/policies.py), the same
expectations, so what the launch test checks is checked in CI too.

With the probe policy loaded: the simulated arm publishes /joint_states, the server holds it
(commands at the pose it reports) while DISABLED, `~/enable` is accepted, and then the
commands follow the probe policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cgrpo_ros.robot.config import RobotConfig
from cgrpo_ros.testing.policies import follows_probe_action

HOLD_TOLERANCE_RAD = 1e-2


def wait_until(
    condition: Callable[[], bool], timeout: float, spin: Callable[[float], None]
) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        spin(0.05)
    return condition()


def check_probe_policy_drives_the_arm(
    node: Any,
    spin: Callable[[float], None],
    robot: RobotConfig,
    *,
    command_topic: str | None = None,
    startup_timeout_s: float = 40.0,
    follow_timeout_s: float = 20.0,
) -> None:
    """Raises AssertionError saying what did not happen. `node` is an rclpy node on the
    stack's domain; `spin(timeout)` spins it once."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import SetBool

    states: list[list[float]] = []
    commands: list[list[float]] = []
    subscriptions = [
        node.create_subscription(
            JointState, "/joint_states", lambda m: states.append(list(m.position)), 10
        ),
        node.create_subscription(
            Float64MultiArray,
            command_topic or robot.command_topic,
            lambda m: commands.append(list(m.data)),
            10,
        ),
    ]
    client = node.create_client(SetBool, "/policy_server/enable")
    try:
        assert wait_until(lambda: bool(states), startup_timeout_s, spin), "no /joint_states"
        assert wait_until(lambda: len(commands) >= 5, startup_timeout_s, spin), "no commands"
        home = states[-1]
        held = np.max(np.abs(np.asarray(commands[-1]) - home))
        assert held < HOLD_TOLERANCE_RAD, f"DISABLED, yet commands {commands[-1]} != pose {home}"
        assert wait_until(client.service_is_ready, startup_timeout_s, spin), "no ~/enable"
        future = client.call_async(SetBool.Request(data=True))
        assert wait_until(future.done, startup_timeout_s, spin), "~/enable did not answer"
        assert future.result().success, future.result().message
        followed = wait_until(
            lambda: follows_probe_action(robot, home, commands[-1]), follow_timeout_s, spin
        )
        assert followed, f"commands did not follow the probe policy: {commands[-1]} from {home}"
    finally:
        for subscription in subscriptions:
            node.destroy_subscription(subscription)
        node.destroy_client(client)
