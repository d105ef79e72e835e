"""The robot YAML: the shipped file loads; every bad value is refused by name and value."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cgrpo_ros.robot.config import (
    RobotConfig,
    default_robot_config_path,
    load_robot_config,
    robot_config_from_dict,
)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    with default_robot_config_path().open() as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


def test_shipped_config_loads() -> None:
    robot = load_robot_config()
    assert isinstance(robot, RobotConfig)
    assert robot.joint_names == tuple(f"joint{i}" for i in range(1, 8))
    assert robot.num_joints == 7
    assert all(lo < hi for lo, hi in zip(robot.position_lower, robot.position_upper, strict=True))
    assert robot.command_topic == "/forward_position_controller/commands"
    assert robot.control_period_s == pytest.approx(0.02)
    assert robot.reach.episode_steps > 0 and robot.reach.success_threshold_m > 0
    assert default_robot_config_path().name == "arm7.yaml"


def test_config_is_immutable() -> None:
    robot = load_robot_config()
    with pytest.raises(AttributeError):
        robot.control_rate_hz = 1.0  # type: ignore[misc]


def _set(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    bad = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    target = bad
    for p in parents:
        target = target[p]
    target[leaf] = value
    return bad


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("joint_names", [], "joint_names"),
        ("joint_names", ["joint1"] * 7, "unique"),
        ("joint_names", ["joint 1", "b", "c", "d", "e", "f", "g"], "joint 1"),
        ("position_lower", [0.0] * 6, "7 numbers"),
        ("position_upper", [-3.0, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973], "-3.0"),
        ("position_lower", [float("nan")] * 7, "nan"),
        ("velocity_limit", [2.0, 2.0, 2.0, 0.0, 2.0, 2.0, 2.0], "0.0"),
        ("acceleration_limit", [-1.0, 1, 1, 1, 1, 1, 1], "-1.0"),
        ("acceleration_limit", ["fast", 1, 1, 1, 1, 1, 1], "fast"),
        ("home", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "0.0"),  # joint4 upper is -0.0698
        ("control_rate_hz", 0, "0"),
        ("control_rate_hz", True, "True"),
        ("controller_name", "bad/name", "bad/name"),
        ("reach.goal_low", [0.3, 0.3], "[0.3, 0.3]"),
        ("reach.goal_high", [0.2, 0.3, 0.6], "0.2"),
        ("reach.success_threshold_m", -0.05, "-0.05"),
        ("reach.episode_steps", 0, "0"),
        ("reach.episode_steps", 2.5, "2.5"),
    ],
)
def test_bad_value_is_refused_naming_field_and_value(
    raw: dict[str, Any], field: str, value: Any, expected: str
) -> None:
    with pytest.raises(ValueError) as err:
        robot_config_from_dict(_set(raw, field, value))
    message = str(err.value)
    assert field.split(".")[-1] in message
    assert expected in message


@pytest.mark.parametrize("missing", ["joint_names", "home", "reach", "controller_name"])
def test_missing_field_is_named(raw: dict[str, Any], missing: str) -> None:
    bad = copy.deepcopy(raw)
    del bad[missing]
    with pytest.raises(ValueError, match=missing):
        robot_config_from_dict(bad)


def test_file_errors_name_the_file(tmp_path: Path, raw: dict[str, Any]) -> None:
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(_set(raw, "control_rate_hz", -5)))
    with pytest.raises(ValueError, match=r"robot\.yaml.*control_rate_hz.*-5"):
        load_robot_config(path)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yaml"):
        load_robot_config(tmp_path / "nowhere.yaml")
