"""Observation vectors from `/joint_states` by joint name, and model-versus-robot validation.

No ROS here: the policy server passes a JointState's `name`, `position` and `velocity`
sequences. Joints are looked up by name, never by message index, because drivers publish
joints in their own order and may add joints the policy never saw (grippers, wheels).
Mismatched observation layout or joint order between training and deployment is the most
reported failure of sim-to-real stacks (rl_sar #138, unitree_rl_lab #82), so every mismatch
is an error that names the joint or the field.

Observation names (docs/architecture.md): `joint_pos/<joint>`, `joint_vel/<joint>`,
`goal/<i>`, and from layout version 2 `fingertip/<i>` and `goal_offset/<i>` (= goal -
fingertip), computed from the joint positions by the robot's forward kinematics exactly as
the reach task computes them in training. The normalisation lives inside the ONNX graph, so
the raw values are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from cgrpo_ros.bounded import shown
from cgrpo_ros.core.policy_artifact import PolicyMetadata
from cgrpo_ros.robot.config import ACTION_MODES, RobotConfig
from cgrpo_ros.robot.reach_task import FINGERTIP_ACTION_NAMES

Float32Array = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]
# Joint values: a JointState's sequence, or the policy server's merged array (config order).
JointValues = Sequence[float] | FloatArray
# 1: joints and goal; 2: adds fingertip and goal_offset (cgrpo_ros/robot/reach_task.py).
SUPPORTED_OBS_LAYOUT_VERSIONS = (1, 2)
# Metadata stores bounds that went through float32 (the gymnasium Box): -2.8973 comes back as
# -2.897300004959106. This tolerance accepts that rounding and nothing a joint could notice.
BOUND_TOLERANCE = 1e-5
# A goal may lie this far outside the goal box [m] (rounding of goals computed elsewhere).
GOAL_BOX_TOLERANCE = 1e-6


class ObservationError(ValueError):
    """A joint state (or goal) from which no observation can be built; says what is wrong."""


class NonFiniteObservationError(ObservationError):
    """A NaN or Inf in a value the policy needs (counted apart from missing joints)."""


class InputKind(StrEnum):
    JOINT_POSITION = "joint_pos"
    JOINT_VELOCITY = "joint_vel"
    GOAL = "goal"
    FINGERTIP = "fingertip"
    GOAL_OFFSET = "goal_offset"


# Entries that are a function of every joint position (forward kinematics), indexed 0..2.
CARTESIAN_KINDS = (InputKind.FINGERTIP, InputKind.GOAL_OFFSET)
INDEXED_KINDS = (InputKind.GOAL, *CARTESIAN_KINDS)


@dataclass(frozen=True)
class ObservationInput:
    """One observation entry: what it reads (joint name or goal index)."""

    kind: InputKind
    key: str  # joint name, or the goal index as text

    @staticmethod
    def parse(name: str) -> ObservationInput:
        kind, sep, key = name.partition("/")
        if not sep or not key or kind not in {k.value for k in InputKind}:
            raise ValueError(
                f"observation name {name!r} is not one this server can build; allowed: "
                "joint_pos/<joint>, joint_vel/<joint>, goal/<i>, fingertip/<i>, goal_offset/<i>"
            )
        if kind == InputKind.GOAL and not key.isdigit():
            raise ValueError(f"observation name {name!r}: the goal index must be an integer")
        if kind in CARTESIAN_KINDS and key not in ("0", "1", "2"):
            raise ValueError(f"observation name {name!r}: the index must be 0, 1 or 2 (x, y, z)")
        return ObservationInput(InputKind(kind), key)


def parse_obs_names(obs_names: Sequence[str], joint_names: Sequence[str]) -> list[ObservationInput]:
    """Parse a layout; unknown kinds, unknown joints, duplicates and goal gaps are errors."""
    if len(set(obs_names)) != len(obs_names):
        dupes = sorted({n for n in obs_names if list(obs_names).count(n) > 1})
        raise ValueError(f"observation names repeat: {dupes}")
    inputs = [ObservationInput.parse(n) for n in obs_names]
    known = set(joint_names)
    for name, item in zip(obs_names, inputs, strict=True):
        if item.kind not in INDEXED_KINDS and item.key not in known:
            raise ValueError(
                f"observation {name!r} names joint {item.key!r}, which the robot config does "
                f"not have (joints: {list(joint_names)})"
            )
    goal_indices = sorted(int(i.key) for i in inputs if i.kind == InputKind.GOAL)
    if goal_indices != list(range(len(goal_indices))):
        raise ValueError(f"goal inputs are {goal_indices}; expected goal/0 .. goal/{{n-1}}")
    if any(i.kind == InputKind.GOAL_OFFSET for i in inputs) and len(goal_indices) != 3:
        raise ValueError("goal_offset/<i> entries need a 3-value goal (goal/0 .. goal/2)")
    return inputs


class ObservationBuilder:
    """Builds the policy's observation from joint states by joint name, plus the goal."""

    def __init__(
        self,
        obs_names: Sequence[str],
        joint_names_from_config: Sequence[str],
        *,
        position_lower: npt.ArrayLike | None = None,
        position_upper: npt.ArrayLike | None = None,
        forward_kinematics: Callable[[FloatArray], FloatArray] | None = None,
        goal_box: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        """`position_lower/upper` (per config joint) clip positions as the training task
        does (ReachTask.observation): MuJoCo's soft limits let a joint sit ~1e-3 rad outside.
        `forward_kinematics` (config-ordered joint positions -> fingertip xyz) is needed by
        layouts with fingertip or goal_offset entries. `goal_box` (lower and upper corner,
        the robot config's reach.goal_low/goal_high) bounds a 3-value goal: the policy was
        trained on goals sampled in it, so a goal outside is refused, not extrapolated.
        """
        self.obs_names = list(obs_names)
        self.joint_names = list(joint_names_from_config)
        self.inputs = parse_obs_names(self.obs_names, self.joint_names)
        self.goal_size = sum(1 for i in self.inputs if i.kind == InputKind.GOAL)
        self.needs_fingertip = any(i.kind in CARTESIAN_KINDS for i in self.inputs)
        if self.needs_fingertip and forward_kinematics is None:
            raise ValueError(
                "the observation has fingertip/goal_offset entries but no forward kinematics "
                "was given (the policy server builds it from the robot config)"
            )
        self._forward_kinematics = forward_kinematics
        # The fingertip depends on every joint; the other entries on the joints they name.
        self.required_joints = sorted(
            set(self.joint_names) if self.needs_fingertip
            else {i.key for i in self.inputs if i.kind not in INDEXED_KINDS},
            key=self.joint_names.index,
        )  # fmt: skip
        self.needs_velocity = any(i.kind == InputKind.JOINT_VELOCITY for i in self.inputs)
        n = len(self.joint_names)
        low = np.full(n, -np.inf) if position_lower is None else np.asarray(position_lower, float)
        high = np.full(n, np.inf) if position_upper is None else np.asarray(position_upper, float)
        if low.shape != (n,) or high.shape != (n,):
            raise ValueError(f"position bounds need {n} values each (one per config joint)")
        self._clip = {j: (low[k], high[k]) for k, j in enumerate(self.joint_names)}
        self._low, self._high = low, high
        self._plan: _BuildPlan | None = None
        self.goal_box: tuple[FloatArray, FloatArray] | None = None
        if goal_box is not None and self.goal_size == len(goal_box[0]) == len(goal_box[1]):
            self.goal_box = (np.asarray(goal_box[0], float), np.asarray(goal_box[1], float))

    def check_goal(self, goal: npt.ArrayLike) -> Float32Array:
        """The goal as float32, or ObservationError saying what is wrong with it: its size,
        a value that is not finite in float64 or not representable in float32 (1e39 would
        become inf in the policy's input), or a goal outside the goal box."""
        values = np.asarray(goal, dtype=np.float64).reshape(-1)
        if values.size != self.goal_size:
            raise ObservationError(
                f"goal has {values.size} values {shown(values)}; the policy needs "
                f"{self.goal_size} (goal/0 .. goal/{self.goal_size - 1})"
            )
        if not np.isfinite(values).all():
            raise NonFiniteObservationError(f"goal {shown(values)} is not finite")
        with np.errstate(over="ignore"):
            as_float32 = values.astype(np.float32)
        if not np.isfinite(as_float32).all():
            raise NonFiniteObservationError(
                f"goal {shown(values)} is not representable as float32, the policy's input "
                f"type; allowed: |value| <= {float(np.finfo(np.float32).max):.4g}"
            )
        if self.goal_box is not None:
            low, high = self.goal_box
            if ((values < low - GOAL_BOX_TOLERANCE) | (values > high + GOAL_BOX_TOLERANCE)).any():
                raise ObservationError(
                    f"goal {shown(values)} is outside the robot config's goal box; allowed: "
                    f"within {low.tolist()} .. {high.tolist()} (reach.goal_low, reach.goal_high:"
                    " the goals the policy was trained on)"
                )
        return as_float32

    def build(
        self,
        names: Sequence[str],
        positions: JointValues,
        velocities: JointValues,
        goal: npt.ArrayLike | None,
    ) -> Float32Array:
        """The observation vector in the model's order; ObservationError if it cannot be.

        The control tick's path (issue 15): where each entry comes from is worked out once per
        list of message names and reused while a driver keeps sending the same names; the
        values are then gathered with numpy. Anything unusual (missing joints, short arrays,
        NaN, no goal) goes through `build_checked`, which says what is wrong.
        """
        plan = self._plan
        if plan is None or plan.names != names:
            plan = self._plan = self._make_plan(names)
        if plan is None or (goal is None and self.goal_size):
            return self.build_checked(names, positions, velocities, goal)
        q_all = np.asarray(positions, dtype=np.float64)
        q = q_all[plan.position_source] if q_all.shape == (len(names),) else None
        qd = None
        if self.needs_velocity:
            qd_all = np.asarray(velocities, dtype=np.float64)
            qd = qd_all[plan.velocity_source] if qd_all.shape[0] >= len(names) else None
        if q is None or (qd is None and self.needs_velocity):
            return self.build_checked(names, positions, velocities, goal)
        if not np.isfinite(q).all() or (qd is not None and not np.isfinite(qd).all()):
            return self.build_checked(names, positions, velocities, goal)
        goal_values: Float32Array | None = None
        if self.goal_size:
            goal_values = self.check_goal(goal)  # type: ignore[arg-type]  # not None here
        q = np.minimum(np.maximum(q, plan.position_low), plan.position_high)
        out = np.empty(len(self.inputs), dtype=np.float32)
        out[plan.position_slots] = q[plan.position_of_slot]
        if qd is not None:
            out[plan.velocity_slots] = qd
        if goal_values is not None:
            out[plan.goal_slots] = goal_values[plan.goal_of_slot]
        if self.needs_fingertip:
            assert self._forward_kinematics is not None
            tip = self._forward_kinematics(q[plan.config_order])
            out[plan.fingertip_slots] = tip[plan.fingertip_of_slot]
            if plan.goal_offset_slots.size:
                goal64 = np.asarray(goal, np.float64).reshape(-1)
                out[plan.goal_offset_slots] = (goal64[:3] - tip)[plan.goal_offset_of_slot]
        return out

    def _make_plan(self, names: Sequence[str]) -> _BuildPlan | None:
        """Index arrays for `build`, or None when the names cannot give an observation."""
        index: dict[str, int] = {}
        for k, name in enumerate(names):
            index.setdefault(name, k)  # the first copy, as `build_checked` reads it
        if len(index) != len(names) or any(j not in index for j in self.required_joints):
            return None  # duplicates or missing joints: `build_checked` explains
        # Positions gathered: the joints position entries name, then every config joint
        # (forward kinematics) in config order.
        position_joints = [i.key for i in self.inputs if i.kind == InputKind.JOINT_POSITION]
        if self.needs_fingertip:
            position_joints += self.joint_names
        gathered = list(dict.fromkeys(position_joints))
        where = {j: k for k, j in enumerate(gathered)}
        config_index = {j: k for k, j in enumerate(self.joint_names)}

        def slots(kind: InputKind) -> npt.NDArray[np.intp]:
            return np.array([k for k, i in enumerate(self.inputs) if i.kind == kind], np.intp)

        def keys(kind: InputKind) -> list[str]:
            return [i.key for i in self.inputs if i.kind == kind]

        velocity_joints = keys(InputKind.JOINT_VELOCITY)
        return _BuildPlan(
            names=list(names),
            position_source=np.array([index[j] for j in gathered], np.intp),
            position_low=np.array([self._low[config_index[j]] for j in gathered]),
            position_high=np.array([self._high[config_index[j]] for j in gathered]),
            position_slots=slots(InputKind.JOINT_POSITION),
            position_of_slot=np.array([where[j] for j in keys(InputKind.JOINT_POSITION)], np.intp),
            velocity_source=np.array([index[j] for j in velocity_joints], np.intp),
            velocity_slots=slots(InputKind.JOINT_VELOCITY),
            goal_slots=slots(InputKind.GOAL),
            goal_of_slot=np.array([int(k) for k in keys(InputKind.GOAL)], np.intp),
            config_order=np.array(
                [where[j] for j in self.joint_names] if self.needs_fingertip else [], np.intp
            ),
            fingertip_slots=slots(InputKind.FINGERTIP),
            fingertip_of_slot=np.array([int(k) for k in keys(InputKind.FINGERTIP)], np.intp),
            goal_offset_slots=slots(InputKind.GOAL_OFFSET),
            goal_offset_of_slot=np.array([int(k) for k in keys(InputKind.GOAL_OFFSET)], np.intp),
        )

    def build_checked(
        self,
        names: Sequence[str],
        positions: JointValues,
        velocities: JointValues,
        goal: npt.ArrayLike | None,
    ) -> Float32Array:
        """`build` entry by entry, with an ObservationError naming what is wrong."""
        index = {name: k for k, name in enumerate(names)}
        missing = [j for j in self.required_joints if j not in index]
        if missing:
            raise ObservationError(
                f"joint_states lacks joint(s) {missing} that the policy observes "
                f"(message joints: {shown(names)})"
            )
        if len(positions) < len(names):
            raise ObservationError(
                f"joint_states has {len(names)} names but {len(positions)} positions"
            )
        if self.needs_velocity and len(velocities) < len(names):
            raise ObservationError(
                f"joint_states has {len(names)} names but {len(velocities)} velocities; the "
                "policy observes joint velocities"
            )
        goal_values: Float32Array | None = None
        if self.goal_size:
            if goal is None:
                raise ObservationError(
                    f"no goal set; the policy needs {self.goal_size} goal values "
                    "(parameter 'goal' or the ~/goal topic)"
                )
            goal_values = self.check_goal(goal)
        # The offset from the goal as sent (float64), as the training task computes it.
        goal64 = None if goal_values is None else np.asarray(goal, np.float64).reshape(-1)
        cartesian = self._cartesian(index, positions, goal64)
        out = np.empty(len(self.inputs), dtype=np.float32)
        for k, item in enumerate(self.inputs):
            if item.kind == InputKind.GOAL:
                assert goal_values is not None
                out[k] = goal_values[int(item.key)]
                continue
            if item.kind in CARTESIAN_KINDS:
                out[k] = cartesian[item.kind][int(item.key)]
                continue
            source = positions if item.kind == InputKind.JOINT_POSITION else velocities
            out[k] = self._joint_value(item, source[index[item.key]])
        return out

    def _joint_value(self, item: ObservationInput, value: float) -> float:
        value = float(value)
        if not math.isfinite(value):
            raise NonFiniteObservationError(
                f"joint_states {item.kind.value} of {item.key!r} is {value}"
            )
        if item.kind == InputKind.JOINT_POSITION:
            low, high = self._clip[item.key]
            value = min(max(value, low), high)
        return value

    def _cartesian(
        self, index: dict[str, int], positions: JointValues, goal: FloatArray | None
    ) -> dict[InputKind, FloatArray]:
        """Fingertip and goal offset from all joint positions (clipped as in training)."""
        if not self.needs_fingertip:
            return {}
        assert self._forward_kinematics is not None
        position_of = [ObservationInput(InputKind.JOINT_POSITION, j) for j in self.joint_names]
        q = np.array([self._joint_value(item, positions[index[item.key]]) for item in position_of])
        tip = self._forward_kinematics(q)
        if goal is None:  # parse_obs_names: a layout with goal_offset has goal/0..2
            return {InputKind.FINGERTIP: tip}
        return {InputKind.FINGERTIP: tip, InputKind.GOAL_OFFSET: goal[:3] - tip}


@dataclass(frozen=True)
class _BuildPlan:
    """Where `build` takes each observation entry from, for one list of message names."""

    names: list[str]
    position_source: npt.NDArray[np.intp]  # message indices of the gathered positions
    position_low: FloatArray  # their clip bounds (as ReachTask.observation clips)
    position_high: FloatArray
    position_slots: npt.NDArray[np.intp]  # observation entries joint_pos/<j> ...
    position_of_slot: npt.NDArray[np.intp]  # ... and which gathered position each takes
    velocity_source: npt.NDArray[np.intp]  # message indices of joint_vel/<j>, slot order
    velocity_slots: npt.NDArray[np.intp]
    goal_slots: npt.NDArray[np.intp]
    goal_of_slot: npt.NDArray[np.intp]
    config_order: npt.NDArray[np.intp]  # gathered positions in config order (kinematics)
    fingertip_slots: npt.NDArray[np.intp]
    fingertip_of_slot: npt.NDArray[np.intp]
    goal_offset_slots: npt.NDArray[np.intp]
    goal_offset_of_slot: npt.NDArray[np.intp]


def validate_policy_against_robot(meta: PolicyMetadata, robot: RobotConfig) -> list[str]:
    """Every difference between a policy's metadata and the robot config, for people.

    Empty list: the policy can drive this robot. Checked: action size, joint names and their
    order, the observation layout (names the server can build from this robot), and that
    the action bounds lie within the joint position limits.
    """
    problems: list[str] = []
    joints = list(robot.joint_names)
    actions = list(meta.action_names)
    if meta.action_mode not in ACTION_MODES:
        problems.append(f"action mode {meta.action_mode!r}; this server runs {list(ACTION_MODES)}")
    elif meta.action_mode == "fingertip_delta":
        # Fingertip steps are scaled and turned into joint targets with the robot config's
        # reach settings, so the config must be the fingertip one the policy trained with.
        if actions != FINGERTIP_ACTION_NAMES:
            problems.append(
                f"action names {actions}; a fingertip_delta policy has {FINGERTIP_ACTION_NAMES}"
            )
        if robot.reach.action != "fingertip_delta":
            problems.append(
                f"the model commands fingertip steps but the robot config's reach.action is "
                f"{robot.reach.action!r}"
            )
        problems += _fingertip_step_problems(meta, robot)
    if meta.action_mode == "joint_position":
        problems += _joint_action_problems(meta, robot)
    if meta.obs_layout_version not in SUPPORTED_OBS_LAYOUT_VERSIONS:
        problems.append(
            f"observation layout version {meta.obs_layout_version}; this server builds "
            f"versions {list(SUPPORTED_OBS_LAYOUT_VERSIONS)}"
        )
    try:
        parse_obs_names(meta.obs_names, joints)
    except ValueError as err:
        problems.append(f"observation layout: {err}")
    return problems


def _fingertip_step_problems(meta: PolicyMetadata, robot: RobotConfig) -> list[str]:
    """The step size the policy trained with (`cgrpo.fingertip_step_m`) against the config's:
    a different step would scale every action the policy takes."""
    trained = meta.extra.get("fingertip_step_m")
    if trained is None:
        return []  # models exported before the step was written into the metadata
    try:
        step = float(trained)
    except ValueError:
        return [f"metadata fingertip_step_m = {trained!r} is not a number"]
    if not math.isclose(step, robot.reach.fingertip_step_m, rel_tol=1e-9):
        return [
            f"fingertip step: the model was trained with {step} m per step, the robot config's "
            f"reach.fingertip_step_m is {robot.reach.fingertip_step_m}"
        ]
    return []


def _joint_action_problems(meta: PolicyMetadata, robot: RobotConfig) -> list[str]:
    """Joint-position actions: one per config joint, in config order, within the limits."""
    problems: list[str] = []
    joints = list(robot.joint_names)
    actions = list(meta.action_names)
    if meta.act_dim != robot.num_joints:
        problems.append(
            f"action size: the model commands {meta.act_dim} joints, the robot config has "
            f"{robot.num_joints}"
        )
    missing = [j for j in joints if j not in actions]
    extra = [a for a in actions if a not in joints]
    if missing:
        problems.append(f"joints in the robot config that the model does not command: {missing}")
    if extra:
        problems.append(f"model actions that are not joints of the robot config: {extra}")
    if not missing and not extra and actions != joints:
        problems.append(f"joint order differs: model actions {actions}, robot config {joints}")
    if actions == joints:
        for j, name in enumerate(joints):
            low, high = meta.action_low[j], meta.action_high[j]
            lower, upper = robot.position_lower[j], robot.position_upper[j]
            if low < lower - BOUND_TOLERANCE or high > upper + BOUND_TOLERANCE:
                problems.append(
                    f"action bounds of {name!r} [{low}, {high}] exceed the joint limits "
                    f"[{lower}, {upper}] of the robot config"
                )
    return problems
