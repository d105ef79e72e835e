"""Static checks of launch/deploy.launch.py and config/deploy.yaml (no ROS launch needed).

launch/launch_ros are not installable here, so the launch file is read as source: every
executable it names must be a console script of setup.py, every parameter file it names must
exist, and every parameter of config/deploy.yaml must be one the node declares.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml
from package_layout import console_scripts, installed_share_files

from cgrpo_ros.nodes.policy_server import NODE_NAME, POLICY_SERVER_PARAMS

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "deploy.launch.py"
DEPLOY_YAML = ROOT / "config" / "deploy.yaml"


def node_calls() -> list[dict[str, object]]:
    """Keyword arguments (constants only) of every Node(...) call in the launch file."""
    tree = ast.parse(LAUNCH.read_text())
    constants = {
        target.id: stmt.value.value
        for stmt in tree.body
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
        for target in stmt.targets
        if isinstance(target, ast.Name)
    }
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            kwargs = {}
            for kw in node.keywords:
                if isinstance(kw.value, ast.Constant):
                    kwargs[kw.arg] = kw.value.value
                elif isinstance(kw.value, ast.Name) and kw.value.id in constants:
                    kwargs[kw.arg] = constants[kw.value.id]
            calls.append(kwargs)
    return calls


def test_every_executable_is_a_console_script() -> None:
    calls = node_calls()
    assert {c["executable"] for c in calls} == {"policy_server", "sim_bridge"}
    assert all(c["package"] == "cgrpo_ros" for c in calls)
    assert {str(c["executable"]) for c in calls} <= set(console_scripts())


def test_every_parameter_file_exists_and_is_installed() -> None:
    text = LAUNCH.read_text()
    joins = re.findall(r'os\.path\.join\(share, ((?:"[^"]+", )*"[^"]+")\)', text)
    files = [Path(*re.findall(r'"([^"]+)"', j)) for j in joins]
    assert Path("config/deploy.yaml") in files and Path("config/robots/arm7.yaml") in files
    installed = installed_share_files()  # setup.py's data_files, share-relative
    for relative in files:
        assert (ROOT / relative).is_file(), relative
        assert str(relative) in installed, f"{relative} is not in setup.py's data_files"
    assert "launch/deploy.launch.py" in installed


def test_deploy_yaml_parameters_are_declared_by_the_node() -> None:
    data = yaml.safe_load(DEPLOY_YAML.read_text())
    assert list(data) == [NODE_NAME]
    params = data[NODE_NAME]["ros__parameters"]
    declared = {spec.name: spec.default for spec in POLICY_SERVER_PARAMS}
    unknown = set(params) - set(declared)
    assert not unknown, f"config/deploy.yaml sets undeclared parameters {sorted(unknown)}"
    for name, value in params.items():
        default = declared[name]
        if isinstance(default, bool | str | float):
            # ROS refuses an int for a double parameter: the YAML must say 0.0, not 0.
            assert type(value) is type(default), (name, value, default)
        for spec in POLICY_SERVER_PARAMS:
            if spec.name == name and spec.range is not None:
                low, high = spec.range
                assert low <= value <= high, (name, value, spec.range)


def test_launch_overrides_are_declared_parameters() -> None:
    overridden = set(re.findall(r'"(\w+)": ParameterValue\(', LAUNCH.read_text()))
    declared = {spec.name for spec in POLICY_SERVER_PARAMS}
    assert overridden - {"robot_config"} <= declared
    assert "robot_config" in declared
