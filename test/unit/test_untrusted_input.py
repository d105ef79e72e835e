"""Issue 19, the pure parts: joint states merged by name, bounded rendering of untrusted
content, strict status JSON, goal checks, and the silent mode's stop and resume (no ROS)."""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from cgrpo_ros.bounded import MAX_TEXT_CHARS, bounded_text, shown, strict_json
from cgrpo_ros.deploy.command_gate import CommandGate, Mode
from cgrpo_ros.deploy.joint_states import (
    MAX_JOINT_STATE_NAMES,
    JointStateError,
    MergedJointStates,
)
from cgrpo_ros.deploy.observation import (
    NonFiniteObservationError,
    ObservationBuilder,
    ObservationError,
)
from cgrpo_ros.deploy.policy_runtime import load_policy_runtime
from cgrpo_ros.robot.config import load_robot_config

ROBOT = load_robot_config()
JOINTS = list(ROBOT.joint_names)
REPO = Path(__file__).resolve().parents[2]


# -- joint states merged by name ---------------------------------------------------------------
def test_two_publishers_merge_by_name_with_per_joint_freshness() -> None:
    merged = MergedJointStates(JOINTS)
    arm = [float(k) for k in range(7)]
    assert merged.update(JOINTS, arm, [0.5] * 7, stamp_ns=1, now=10.0) == 7
    # A gripper's message names none of the arm's joints: nothing changes, not an error.
    assert merged.update(["finger_l", "finger_r"], [0.04, 0.04], [], stamp_ns=2, now=10.05) == 0
    np.testing.assert_array_equal(merged.positions, arm)
    assert merged.stamp_ns == 1 and merged.missing() == []
    # A partial arm message updates only its joints, and only their freshness.
    merged.update(["joint3", "finger_l"], [9.0, 0.0], [1.0, 0.0], stamp_ns=3, now=10.2)
    assert merged.positions[2] == 9.0 and merged.positions[0] == 0.0
    assert merged.stale_joints(10.21, 0.1) == [j for j in JOINTS if j != "joint3"]
    assert merged.oldest_age(10.21) == pytest.approx(0.21)


def test_a_joint_never_heard_is_missing_and_infinitely_old() -> None:
    merged = MergedJointStates(JOINTS)
    merged.update(JOINTS[:6], [0.0] * 6, [0.0] * 6, stamp_ns=1, now=1.0)
    assert merged.missing() == ["joint7"]
    assert math.isinf(merged.oldest_age(1.0))


def test_duplicate_names_refuse_the_whole_message() -> None:
    merged = MergedJointStates(JOINTS)
    merged.update(JOINTS, [0.0] * 7, [0.0] * 7, stamp_ns=1, now=1.0)
    names = [*JOINTS, "joint2"]
    with pytest.raises(JointStateError, match=r"\['joint2'\] appear more than once"):
        merged.update(names, [0.0] * 7 + [0.8], [0.0] * 8, stamp_ns=2, now=2.0)
    assert merged.positions[1] == 0.0 and merged.received[1] == 1.0  # nothing taken


@pytest.mark.parametrize(
    ("positions", "velocities", "message"),
    [(6, 7, "7 names but 6 positions"), (7, 3, "7 names but 3 velocities")],
)
def test_arrays_not_one_per_name_are_refused(positions: int, velocities: int, message: str) -> None:
    merged = MergedJointStates(JOINTS)
    with pytest.raises(JointStateError, match=message):
        merged.update(JOINTS, [0.0] * positions, [0.0] * velocities, stamp_ns=1, now=1.0)
    assert merged.missing() == JOINTS


def test_an_empty_velocity_array_makes_velocities_unknown() -> None:
    merged = MergedJointStates(JOINTS)
    merged.update(JOINTS, [0.0] * 7, [0.1] * 7, stamp_ns=1, now=1.0)
    assert merged.without_velocity() == []
    merged.update(JOINTS[:2], [0.0, 0.0], [], stamp_ns=2, now=2.0)  # "empty: not available"
    assert merged.without_velocity() == JOINTS[:2]
    assert np.isnan(merged.velocities[:2]).all() and merged.velocities[2] == 0.1


def test_too_many_names_are_refused_before_looking_at_them() -> None:
    merged = MergedJointStates(JOINTS)
    n = 100_000
    with pytest.raises(JointStateError, match=f"{n} names refused") as err:
        merged.update([f"j{i}" for i in range(n)], [0.0] * n, [], stamp_ns=1, now=1.0)
    assert str(MAX_JOINT_STATE_NAMES) in str(err.value) and len(str(err.value)) < 200


# -- one bounded renderer ----------------------------------------------------------------------
def test_shown_is_bounded_for_huge_names_and_lists() -> None:
    for value in (["x" * 1_000_000] * 8, [f"joint{i}" for i in range(100_000)], "y" * 10**6):
        text = shown(value)
        assert len(text) < 400, len(text)
    assert "(100000 items)" in shown(list(range(100_000)))
    assert "(1000000 chars)" in shown("y" * 10**6)
    assert shown(["joint1", "joint2"]) == "['joint1', 'joint2']"  # short: as repr
    assert shown(np.float64(1.5)) == "1.5"


def test_bounded_text_cuts_and_says_how_long_it_was() -> None:
    assert bounded_text("short") == "short"
    cut = bounded_text("z" * 10**6)
    assert len(cut) < MAX_TEXT_CHARS + 40 and cut.endswith("(1000000 chars)")


def test_strict_json_never_writes_infinity_or_nan() -> None:
    text = strict_json({"goal": [np.float32("inf"), 1.0], "age": float("nan"), "n": np.int64(2)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "goal": [None, 1.0], "age": None, "n": 2
    }  # fmt: skip


NODE_MODULES = [
    "cgrpo_ros/nodes/policy_server.py",
    "cgrpo_ros/nodes/learner.py",
    "cgrpo_ros/nodes/rollout_worker.py",
    "sim_bridge/node.py",
]


@pytest.mark.parametrize("module", NODE_MODULES)
def test_every_node_renders_untrusted_content_through_the_bounded_renderer(module: str) -> None:
    """Issue 19: one renderer, used by every node that reports what a topic delivered."""
    tree = ast.parse((REPO / module).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "cgrpo_ros.bounded"
        for alias in node.names
    }
    assert imported & {"shown", "bounded_text"}, f"{module} imports {imported}"


# -- goals -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> ObservationBuilder:
    """The reach policy's builder as the server loads it (with the robot's goal box)."""
    sys.path.insert(0, str(REPO / "test"))
    from cgrpo_ros.testing.policies import write_probe_policy

    path = write_probe_policy(tmp_path_factory.mktemp("m") / "p.onnx", ROBOT)
    return load_policy_runtime(path, ROBOT).builder


def test_a_goal_finite_in_float64_but_not_in_float32_is_refused(
    builder: ObservationBuilder,
) -> None:
    with pytest.raises(NonFiniteObservationError, match="not representable as float32"):
        builder.check_goal([1e39, 0.0, 0.4])


def test_a_goal_outside_the_goal_box_is_refused(builder: ObservationBuilder) -> None:
    with pytest.raises(ObservationError, match="outside the robot config's goal box"):
        builder.check_goal([2.0, 0.0, 0.4])
    inside = builder.check_goal([0.45, 0.0, 0.4])
    assert inside.dtype == np.float32


def test_a_huge_goal_is_refused_with_a_bounded_message(builder: ObservationBuilder) -> None:
    with pytest.raises(ObservationError) as err:
        builder.check_goal([0.5] * 100_000)
    assert len(str(err.value)) < 500


# -- silent mode: brake to rest, then resume without a step ------------------------------------
def gate() -> CommandGate:
    g = CommandGate(
        lower=ROBOT.lower,
        upper=ROBOT.upper,
        velocity_limit=ROBOT.velocity_limit,
        acceleration_limit=ROBOT.acceleration_limit,
        dt=ROBOT.control_period_s,
        blend_time_s=0.0,
    )
    g.start(ROBOT.home)
    return g


def test_at_rest_only_once_a_hold_has_braked_to_a_stop() -> None:
    g = gate()
    assert g.at_rest  # started at rest
    g.enable()
    far = np.clip(ROBOT.home_array + 1.0, ROBOT.lower, ROBOT.upper)
    for _ in range(20):
        g.tick(far)
    assert not g.at_rest  # enabled, moving
    g.disable()
    ticks = 0
    while not g.at_rest:
        g.tick(None)
        ticks += 1
        assert ticks < 200
    assert ticks > 2  # it had to brake
    assert np.array_equal(g.tick(None), g.last_command)  # and stays


def test_resume_continues_from_the_last_command_unless_the_arm_was_moved() -> None:
    g = gate()
    assert g.last_command is not None
    last = g.last_command.copy()
    assert not g.resume(last + 0.01, tolerance=0.02)
    np.testing.assert_array_equal(g.last_command, last)
    assert g.resume(last + 0.3, tolerance=0.02)  # moved by something else: start there
    np.testing.assert_allclose(g.last_command, np.clip(last + 0.3, ROBOT.lower, ROBOT.upper))
    assert g.mode is Mode.DISABLED and g.at_rest
