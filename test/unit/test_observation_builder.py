"""ObservationBuilder (by joint name) and the model-versus-robot validation messages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cgrpo_ros.core.policy_artifact import PolicyMetadata
from cgrpo_ros.deploy.command_gate import CommandGate, HoldReason, Mode
from cgrpo_ros.deploy.observation import (
    NonFiniteObservationError,
    ObservationBuilder,
    ObservationError,
    validate_policy_against_robot,
)
from cgrpo_ros.robot.config import load_robot_config
from cgrpo_ros.robot.reach_task import ReachTask

ROBOT = load_robot_config()
TASK = ReachTask(ROBOT)  # fingertip_delta actions, observation layout version 2
JOINT_ROBOT = dataclasses.replace(
    ROBOT, reach=dataclasses.replace(ROBOT.reach, action="joint_position")
)
JOINT_TASK = ReachTask(JOINT_ROBOT)
JOINTS = list(ROBOT.joint_names)
Q = {j: 0.1 * (k + 1) - 2.0 * (j == "joint4") for k, j in enumerate(JOINTS)}
QD = {j: -0.01 * (k + 1) for k, j in enumerate(JOINTS)}
GOAL = [0.4, 0.1, 0.3]


def builder() -> ObservationBuilder:
    return ObservationBuilder(
        TASK.observation_names(),
        JOINTS,
        position_lower=ROBOT.lower,
        position_upper=ROBOT.upper,
        forward_kinematics=TASK.fingertip,
    )


def build(names: list[str], extra: dict[str, float] | None = None) -> np.ndarray:
    q, qd = {**Q, **(extra or {})}, {**QD, **(extra or {})}
    return builder().build(names, [q[n] for n in names], [qd[n] for n in names], GOAL)


def expected() -> np.ndarray:
    return TASK.observation([Q[j] for j in JOINTS], [QD[j] for j in JOINTS], GOAL)


def test_in_order_matches_the_training_task() -> None:
    np.testing.assert_array_equal(build(JOINTS), expected())


def test_reordered_and_extra_joints_are_found_by_name() -> None:
    names = ["finger", *reversed(JOINTS), "wheel"]
    np.testing.assert_array_equal(build(names, {"finger": 9.0, "wheel": -9.0}), expected())


def test_missing_joint_is_an_error_naming_it() -> None:
    with pytest.raises(ObservationError, match="joint5"):
        build([j for j in JOINTS if j != "joint5"])


def test_nan_is_an_error_naming_joint_and_field() -> None:
    names = list(JOINTS)
    velocities = [QD[n] for n in names]
    velocities[2] = float("nan")
    with pytest.raises(NonFiniteObservationError, match=r"joint_vel of 'joint3'"):
        builder().build(names, [Q[n] for n in names], velocities, GOAL)


def test_missing_velocities_and_goal_are_errors() -> None:
    with pytest.raises(ObservationError, match="velocities"):
        builder().build(JOINTS, [Q[n] for n in JOINTS], [], GOAL)
    with pytest.raises(ObservationError, match="no goal"):
        builder().build(JOINTS, [Q[n] for n in JOINTS], [QD[n] for n in JOINTS], None)
    with pytest.raises(ObservationError, match="needs 3"):
        builder().check_goal([0.1, 0.2])


def test_positions_are_clipped_like_the_training_task() -> None:
    out = build(JOINTS, {"joint1": 99.0})
    assert out[0] == np.float32(ROBOT.position_upper[0])
    # ... the fingertip too: it is computed from the clipped positions, as in training.
    clipped = [ROBOT.position_upper[0], *[Q[j] for j in JOINTS[1:]]]
    np.testing.assert_allclose(out[17:20], TASK.fingertip(clipped), rtol=1e-6)


def test_fingertip_entries_need_kinematics_and_a_full_goal() -> None:
    names = TASK.observation_names()
    with pytest.raises(ValueError, match="no forward kinematics"):
        ObservationBuilder(names, JOINTS)
    with pytest.raises(ValueError, match="goal_offset/<i> entries need a 3-value goal"):
        ObservationBuilder([n for n in names if not n.startswith("goal/")], JOINTS,
                           forward_kinematics=TASK.fingertip)  # fmt: skip
    with pytest.raises(ValueError, match=r"'fingertip/3': the index must be 0, 1 or 2"):
        ObservationBuilder([*names, "fingertip/3"], JOINTS, forward_kinematics=TASK.fingertip)
    # The fingertip depends on every joint: a missing one is named even if not observed.
    only_goal = ObservationBuilder(["fingertip/0", "goal/0", "goal/1", "goal/2"], JOINTS,
                                   forward_kinematics=TASK.fingertip)  # fmt: skip
    with pytest.raises(ObservationError, match="joint6"):
        only_goal.build([j for j in JOINTS if j != "joint6"], [0.0] * 6, [0.0] * 6, GOAL)


def metadata(task: ReachTask = TASK, **changes: object) -> PolicyMetadata:
    base = PolicyMetadata(
        policy_id=0,
        policy_version=1,
        obs_dim=task.obs_dim,
        act_dim=task.act_dim,
        obs_names=task.observation_names(),
        action_names=task.action_names(),
        action_low=[float(x) for x in task.action_low],  # float32-rounded, as exported
        action_high=[float(x) for x in task.action_high],
        task="cgrpo_ros/Arm7Reach-v0",
        obs_layout_version=2,
        action_mode=task.action_mode,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_matching_metadata_has_no_differences() -> None:
    assert validate_policy_against_robot(metadata(), ROBOT) == []
    same_step = metadata(extra={"fingertip_step_m": repr(ROBOT.reach.fingertip_step_m)})
    assert validate_policy_against_robot(same_step, ROBOT) == []
    # A joint-position policy can drive the arm whatever reach.action the config trains.
    assert validate_policy_against_robot(metadata(JOINT_TASK), ROBOT) == []


@pytest.mark.parametrize(
    ("robot", "changes", "message"),
    [
        (JOINT_ROBOT, {}, "reach.action is 'joint_position'"),
        (ROBOT, {"action_names": ["dx", "dy", "dz"]}, "a fingertip_delta policy has"),
        (ROBOT, {"action_mode": "torque"}, "action mode 'torque'; this server runs"),
        (ROBOT, {"obs_layout_version": 3}, "observation layout version 3"),
        (
            ROBOT,
            {"extra": {"fingertip_step_m": "0.02"}},
            "trained with 0.02 m per step, the robot config's reach.fingertip_step_m is 0.04",
        ),
        (ROBOT, {"extra": {"fingertip_step_m": "big"}}, "fingertip_step_m = 'big' is not a"),
    ],
)
def test_fingertip_policy_mismatches_are_named(
    robot: object, changes: dict[str, object], message: str
) -> None:
    problems = validate_policy_against_robot(metadata(**changes), robot)  # type: ignore[arg-type]
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"action_names": [JOINTS[1], JOINTS[0], *JOINTS[2:]]}, "joint order differs"),
        (
            {"action_names": [*JOINTS[:-1], "wrist"]},
            "not command: ['joint7']",
        ),
        (
            {
                "obs_names": ["obs/0", *TASK.observation_names()[1:]],
            },
            "'obs/0' is not one this server can build",
        ),
        (
            {"obs_names": [*TASK.observation_names()[:-1], "joint_pos/elbow"]},
            "joint 'elbow'",
        ),
        (
            {"action_high": [*[float(x) for x in JOINT_TASK.action_high[:-1]], 3.5]},
            "action bounds of 'joint7' [-2.8973",
        ),
    ],
)
def test_mismatches_are_named(changes: dict[str, object], message: str) -> None:
    problems = validate_policy_against_robot(metadata(JOINT_TASK, **changes), ROBOT)
    assert any(message in p for p in problems), problems


def test_wrong_action_size_is_named() -> None:
    six = metadata(
        JOINT_TASK,
        act_dim=6,
        action_names=JOINTS[:6],
        action_low=[-1.0] * 6,
        action_high=[1.0] * 6,
    )
    problems = validate_policy_against_robot(six, ROBOT)
    assert any("commands 6 joints" in p and "has 7" in p for p in problems), problems


def gate(blend: float = 0.0) -> CommandGate:
    g = CommandGate(
        lower=ROBOT.lower,
        upper=ROBOT.upper,
        velocity_limit=ROBOT.velocity_limit,
        acceleration_limit=ROBOT.acceleration_limit,
        dt=ROBOT.control_period_s,
        blend_time_s=blend,
    )
    g.start(ROBOT.home)
    return g


def test_gate_holds_until_enabled_and_after_estop_until_reset() -> None:
    g = gate()
    far = ROBOT.home_array + 0.5
    np.testing.assert_array_equal(g.tick(far), ROBOT.home_array)
    g.enable()
    moved = [g.tick(far) for _ in range(5)][-1]
    assert (moved != ROBOT.home_array).any()
    g.estop()
    with pytest.raises(RuntimeError, match="reset_estop"):
        g.enable()
    commands = np.array([g.tick(far) for _ in range(200)])
    assert np.allclose(commands[-1], commands[-2])  # stopped at the acceleration limit
    assert g.holds[HoldReason.ESTOP.value] == 200
    g.reset_estop()
    assert g.mode is Mode.DISABLED


def test_gate_never_passes_nan_and_blends_in() -> None:
    g = gate(blend=1.0)
    g.enable()
    command = g.tick(np.full(7, np.nan))
    assert np.isfinite(command).all() and g.holds[HoldReason.NONFINITE_ACTION.value] == 1
    target = np.clip(ROBOT.home_array + 0.05, ROBOT.lower, ROBOT.upper)
    first = g.tick(target)
    # Blend: after one tick only dt / blend_time of the way (and within the limiter).
    assert np.all(np.abs(first - ROBOT.home_array) <= 0.05 * ROBOT.control_period_s + 1e-12)


@pytest.mark.parametrize("layout", ["fingertip", "joints_only"])
def test_cached_build_equals_the_checked_build(layout: str) -> None:
    """The tick's path (names planned once, numpy gathers) against `build_checked`, which
    reads entry by entry: the same float32 values for the same message, bit for bit, over
    reordered and extra joints, out-of-bound positions, and a plan reused across messages."""
    obs_names = (
        TASK.observation_names()
        if layout == "fingertip"
        else [f"joint_vel/{j}" for j in reversed(JOINTS)] + [f"joint_pos/{j}" for j in JOINTS[:5]]
    )
    b = ObservationBuilder(
        obs_names,
        JOINTS,
        position_lower=ROBOT.lower,
        position_upper=ROBOT.upper,
        forward_kinematics=TASK.fingertip,
    )
    rng = np.random.default_rng(3)
    names = ["gripper", *reversed(JOINTS), "wheel"]
    for k in range(50):
        if k == 25:
            names = list(rng.permutation(names))  # a new list of names: a new plan
        q = rng.uniform(-3.5, 3.5, len(names))  # some beyond the joint limits: clipped
        qd = rng.normal(0.0, 1.0, len(names))
        goal = rng.uniform(-0.5, 0.5, 3)
        fast = b.build(list(names), q.tolist(), qd.tolist(), goal)
        checked = b.build_checked(list(names), q.tolist(), qd.tolist(), goal)
        assert fast.dtype == np.float32
        assert np.array_equal(fast, checked), (k, fast - checked)


def test_cached_build_reports_what_the_checked_build_reports() -> None:
    b = builder()
    names = list(JOINTS)
    q, qd = [Q[j] for j in JOINTS], [QD[j] for j in JOINTS]
    b.build(names, q, qd, GOAL)  # a plan for these names exists now
    with pytest.raises(NonFiniteObservationError, match="joint_vel of 'joint2'"):
        b.build(names, q, [qd[0], float("nan"), *qd[2:]], GOAL)
    with pytest.raises(ObservationError, match="7 names but 6 positions"):
        b.build(names, q[:6], qd, GOAL)
    with pytest.raises(ObservationError, match="no goal set"):
        b.build(names, q, qd, None)
    with pytest.raises(ObservationError, match=r"lacks joint\(s\) \['joint3'\]"):
        b.build([j for j in names if j != "joint3"], q[:6], qd[:6], GOAL)
