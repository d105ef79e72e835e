"""The robot configuration shared by training, the sim bridge and the policy server.

One YAML file (`config/robots/arm7.yaml`) names the joints and their order, limits, the home
pose, the control rate, the ros2_control controller and the reach task. Joint order mismatch
between training and deployment is the most reported failure of sim-to-real RL stacks
(rl_sar #138, unitree_rl_lab #82), so every consumer reads this one file and every bad value
is refused loudly, with the field, the value and what is allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import yaml

if TYPE_CHECKING:
    from cgrpo_ros.robot.rate_limiter import JointRateLimiter

FloatArray = npt.NDArray[np.float64]

_CONFIG_RELPATH = Path("config") / "robots" / "arm7.yaml"
# ROS 2 graph names: letters, digits and underscores, not starting with a digit.
_ROS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class ReachConfig:
    """The reach task: move the fingertip to a goal sampled in a box."""

    goal_low: tuple[float, float, float]
    """Lower corner [m] of the goal box, world frame."""
    goal_high: tuple[float, float, float]
    """Upper corner [m] of the goal box, world frame."""
    success_threshold_m: float
    """Success when the fingertip is within this distance [m] of the goal."""
    episode_steps: int
    """Control steps per episode before truncation."""
    success_bonus: float = 0.0
    """Reward added on each step that ends within the success threshold."""
    action: str = "fingertip_delta"
    """What the policy commands: one of ACTION_MODES (cgrpo_ros/robot/reach_task.py says how)."""
    fingertip_step_m: float = 0.04
    """fingertip_delta: fingertip displacement [m] per control step at action magnitude 1."""
    progress_reward_per_m: float = 10.0
    """Reward per metre the fingertip moved towards the goal in the step."""


ACTION_MODES = ("fingertip_delta", "joint_position")


@dataclass(frozen=True, kw_only=True)
class RobotConfig:
    """A position-controlled arm as its ros2_control driver exposes it."""

    name: str
    """Robot name (also the MJCF model name)."""
    joint_names: tuple[str, ...]
    """Joint names in the order of every per-joint list, observation and command."""
    position_lower: tuple[float, ...]
    """Lower position limit [rad] per joint."""
    position_upper: tuple[float, ...]
    """Upper position limit [rad] per joint."""
    velocity_limit: tuple[float, ...]
    """Maximum joint speed [rad/s] per joint (deploy-time rate limiter)."""
    acceleration_limit: tuple[float, ...]
    """Maximum joint acceleration [rad/s^2] per joint (deploy-time rate limiter)."""
    home: tuple[float, ...]
    """Start and reset pose [rad]."""
    control_rate_hz: float
    """One command per control period 1 / control_rate_hz."""
    controller_name: str
    """forward_command_controller name; commands arrive on /<controller_name>/commands."""
    reach: ReachConfig
    """The reach task."""

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def command_topic(self) -> str:
        return f"/{self.controller_name}/commands"

    def command_limiter(self) -> JointRateLimiter:
        """The per-joint rate limiter every command to this arm goes through.

        Training (the Arm7Reach env and the ros_robot worker backend) and deployment (the
        policy server) use the same limits, so a policy is trained on the dynamics it is
        deployed with, and a real arm never receives a jump while training either.
        """
        from cgrpo_ros.robot.rate_limiter import JointRateLimiter

        return JointRateLimiter(
            velocity_limit=np.asarray(self.velocity_limit, dtype=np.float64),
            acceleration_limit=np.asarray(self.acceleration_limit, dtype=np.float64),
            lower=self.lower,
            upper=self.upper,
        )

    @property
    def lower(self) -> FloatArray:
        return np.asarray(self.position_lower, dtype=np.float64)

    @property
    def upper(self) -> FloatArray:
        return np.asarray(self.position_upper, dtype=np.float64)

    @property
    def home_array(self) -> FloatArray:
        return np.asarray(self.home, dtype=np.float64)


def _require(mapping: dict[str, Any], field: str, where: str) -> Any:
    if field not in mapping:
        raise ValueError(f"{where}: missing required field '{field}'")
    return mapping[field]


def _float_list(
    value: Any, field: str, length: int, each: str = "one per joint in joint_names"
) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or len(value) != length:
        raise ValueError(
            f"field '{field}' = {value!r}: expected a list of {length} numbers ({each})"
        )
    out: list[float] = []
    for i, v in enumerate(value):
        # bool is an int subclass; True as a joint limit is always a typo.
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"field '{field}'[{i}] = {v!r}: expected a finite number")
        out.append(float(v))
    return tuple(out)


def _positive(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"field '{field}' = {value!r}: expected a positive number")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"field '{field}' = {value!r}: expected a finite number > 0")
    return float(value)


def _parse_reach(raw: Any) -> ReachConfig:
    if not isinstance(raw, dict):
        raise ValueError(f"field 'reach' = {raw!r}: expected a mapping with goal_low, ...")
    low = _float_list(_require(raw, "goal_low", "reach"), "reach.goal_low", 3, "x, y, z [m]")
    high = _float_list(_require(raw, "goal_high", "reach"), "reach.goal_high", 3, "x, y, z [m]")
    for i, (lo, hi) in enumerate(zip(low, high, strict=True)):
        if not lo < hi:
            raise ValueError(
                f"field 'reach.goal_low'[{i}] = {lo} must be < 'reach.goal_high'[{i}] = {hi}"
            )
    steps = _require(raw, "episode_steps", "reach")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"field 'reach.episode_steps' = {steps!r}: expected an integer >= 1")
    bonus = raw.get("success_bonus", 0.0)
    if isinstance(bonus, bool) or not isinstance(bonus, int | float) or not math.isfinite(bonus):
        raise ValueError(f"field 'reach.success_bonus' = {bonus!r}: expected a finite number")
    action = raw.get("action", "fingertip_delta")
    if action not in ACTION_MODES:
        raise ValueError(f"field 'reach.action' = {action!r}: expected one of {list(ACTION_MODES)}")
    return ReachConfig(
        goal_low=(low[0], low[1], low[2]),
        goal_high=(high[0], high[1], high[2]),
        success_threshold_m=_positive(
            _require(raw, "success_threshold_m", "reach"), "reach.success_threshold_m"
        ),
        episode_steps=steps,
        success_bonus=float(bonus),
        action=action,
        fingertip_step_m=_positive(raw.get("fingertip_step_m", 0.04), "reach.fingertip_step_m"),
        progress_reward_per_m=_positive(
            raw.get("progress_reward_per_m", 10.0), "reach.progress_reward_per_m"
        ),
    )


def robot_config_from_dict(raw: Any) -> RobotConfig:
    """Validate a parsed YAML mapping; every bad value raises ValueError naming the field."""
    if not isinstance(raw, dict):
        raise ValueError(f"robot config: expected a mapping at the top level, got {raw!r}")
    names = _require(raw, "joint_names", "robot config")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and _ROS_NAME.match(n) for n in names)
    ):
        raise ValueError(
            f"field 'joint_names' = {names!r}: expected a non-empty list of names "
            "(letters, digits, underscores)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"field 'joint_names' = {names!r}: names must be unique")
    n = len(names)
    lower = _float_list(_require(raw, "position_lower", "robot config"), "position_lower", n)
    upper = _float_list(_require(raw, "position_upper", "robot config"), "position_upper", n)
    for i, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
        if not lo < hi:
            raise ValueError(
                f"field 'position_lower'[{i}] = {lo} ({names[i]}) must be < "
                f"'position_upper'[{i}] = {hi}"
            )
    limits: dict[str, tuple[float, ...]] = {}
    for field in ("velocity_limit", "acceleration_limit"):
        values = _float_list(_require(raw, field, "robot config"), field, n)
        for i, v in enumerate(values):
            if v <= 0:
                raise ValueError(f"field '{field}'[{i}] = {v} ({names[i]}): expected > 0")
        limits[field] = values
    home = _float_list(_require(raw, "home", "robot config"), "home", n)
    for i, q in enumerate(home):
        if not lower[i] <= q <= upper[i]:
            raise ValueError(
                f"field 'home'[{i}] = {q} ({names[i]}): outside the joint limits "
                f"[{lower[i]}, {upper[i]}]"
            )
    controller = _require(raw, "controller_name", "robot config")
    if not isinstance(controller, str) or not _ROS_NAME.match(controller):
        raise ValueError(
            f"field 'controller_name' = {controller!r}: expected a ROS name such as "
            "'forward_position_controller' (letters, digits, underscores)"
        )
    name = raw.get("name", "arm7")
    if not isinstance(name, str) or not name:
        raise ValueError(f"field 'name' = {name!r}: expected a non-empty string")
    return RobotConfig(
        name=name,
        joint_names=tuple(names),
        position_lower=lower,
        position_upper=upper,
        velocity_limit=limits["velocity_limit"],
        acceleration_limit=limits["acceleration_limit"],
        home=home,
        control_rate_hz=_positive(
            _require(raw, "control_rate_hz", "robot config"), "control_rate_hz"
        ),
        controller_name=controller,
        reach=_parse_reach(_require(raw, "reach", "robot config")),
    )


def load_robot_config(path: str | Path | None = None) -> RobotConfig:
    """Read and validate a robot YAML file (default: the shipped arm7.yaml)."""
    file = Path(path) if path is not None else default_robot_config_path()
    if not file.is_file():
        raise FileNotFoundError(f"robot config file not found: {file}")
    with file.open(encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    try:
        return robot_config_from_dict(raw)
    except ValueError as err:
        raise ValueError(f"{file}: {err}") from None


def default_robot_config_path() -> Path:
    """Path of the shipped `config/robots/arm7.yaml` (a checkout or an install: share.py)."""
    from cgrpo_ros.share import find_share_file

    return find_share_file(
        _CONFIG_RELPATH,
        hint="pass an explicit path (e.g. the node parameter robot_config:=/path/to/arm7.yaml)",
    )
