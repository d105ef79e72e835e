"""Static checks of the launch files and parameter files (no `launch` import needed).

Every executable a launch file names is a console script of setup.py, every parameter file
exists, and every parameter set by a YAML file, a launch file or `cgrpo train-sim` is declared
by the node that receives it (each node keeps a module-level DECLARED_PARAMETERS tuple).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from cgrpo_ros.nodes import learner, rollout_worker
from cgrpo_ros.stack import build_commands

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = ("train_sim.launch.py", "train_sim_robot.launch.py")
PARAM_FILES = ("train_sim.yaml", "train_sim_robot.yaml")


def _console_scripts() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    scripts = ast.literal_eval(value)
                    return {s.split("=")[0].strip() for s in scripts}
    raise AssertionError("setup.py has no console_scripts")


def _sim_bridge_parameters() -> set[str]:
    """Names in SimBridgeNode._declare_parameters' `specs` list: ("name", default, descriptor)."""
    tree = ast.parse((REPO / "sim_bridge" / "node.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "specs" for t in targets):
                assert isinstance(node.value, ast.List)
                for element in node.value.elts:
                    assert isinstance(element, ast.Tuple)
                    first = element.elts[0]
                    assert isinstance(first, ast.Constant)
                    names.add(first.value)
    assert names, "no parameter specs found in sim_bridge/node.py"
    return names


DECLARED = {
    "learner": set(learner.DECLARED_PARAMETERS),
    "rollout_worker": set(rollout_worker.DECLARED_PARAMETERS),
    "sim_bridge": _sim_bridge_parameters(),
}


def _flatten(params: dict[str, Any], prefix: str = "") -> set[str]:
    names = set()
    for key, value in params.items():
        if isinstance(value, dict):  # nested YAML = dotted parameter names (cgrpo.<field>)
            names |= _flatten(value, f"{prefix}{key}.")
        else:
            names.add(prefix + key)
    return names


def _launch_calls(path: Path, func: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == func
    ]


def _keyword(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _module_tuple(path: Path, name: str) -> tuple[Any, ...]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    return ()


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_launch_executables_are_console_scripts(launch_file: str) -> None:
    scripts = _console_scripts()
    calls = _launch_calls(REPO / "launch" / launch_file, "Node")
    assert calls, f"{launch_file} starts no Node"
    for call in calls:
        package, executable = _keyword(call, "package"), _keyword(call, "executable")
        assert isinstance(executable, ast.Constant), f"{launch_file}: executable not a literal"
        assert executable.value in scripts, f"{executable.value} is not in setup.py"
        assert isinstance(package, ast.Name | ast.Constant)  # PACKAGE or "cgrpo_ros"


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_launch_parameter_files_exist_and_are_installed(launch_file: str) -> None:
    source = (REPO / "launch" / launch_file).read_text()
    named = {
        n.value
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.endswith(".yaml")
    }
    assert named, f"{launch_file} names no parameter file"
    for name in named:
        assert (REPO / "config" / name).is_file(), f"{launch_file} names missing config/{name}"
    # setup.py installs config/*.yaml into share/cgrpo_ros/config, where the launch file looks.
    assert '"/config", glob("config/*.yaml")' in (REPO / "setup.py").read_text()


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_launch_overrides_are_declared(launch_file: str) -> None:
    path = REPO / "launch" / launch_file
    shared = set(_module_tuple(path, "SHARED"))
    learner_only = set(_module_tuple(path, "LEARNER_ONLY"))
    arguments = {a[0] for a in _module_tuple(path, "ARGUMENTS")}
    assert shared and shared <= arguments
    assert shared | learner_only <= DECLARED["learner"]
    assert shared <= DECLARED["rollout_worker"]
    names = {
        c.value
        for c in (_keyword(n, "name") for n in _launch_calls(path, "Node"))
        if isinstance(c, ast.Constant)  # workers: f"rollout_worker_{w}", served by `/**`
    }
    assert "learner" in names  # matches the `learner:` section of the parameter files


@pytest.mark.parametrize("param_file", PARAM_FILES)
def test_yaml_parameters_are_declared_by_their_nodes(param_file: str) -> None:
    data = yaml.safe_load((REPO / "config" / param_file).read_text())
    # `/**` reaches every node; it carries the workers' parameters (they have no section of
    # their own because their names are numbered), so the worker must declare all of them.
    sections = {"/**": "rollout_worker", "learner": "learner", "sim_bridge": "sim_bridge"}
    assert set(data) <= set(sections), f"{param_file}: unexpected sections {set(data)}"
    for section, params in data.items():
        names = _flatten(params["ros__parameters"])
        undeclared = names - DECLARED[sections[section]]
        assert not undeclared, f"{param_file} [{section}]: {undeclared} not declared"


def test_train_sim_command_sets_only_declared_parameters(tmp_path: Path) -> None:
    args = argparse.Namespace(
        env="HalfCheetah-v5", variant="full", policies=3, groups=2, iterations=2,
        steps_per_iteration=64, seed=1, resume=False, checkpoint_every=5,
        config=tmp_path / "c.yaml", workers=2,
    )  # fmt: skip
    commands = build_commands(args, tmp_path / "run", REPO / "config" / "train_sim.yaml")
    assert [name for name, _ in commands] == ["learner", "rollout_worker_0", "rollout_worker_1"]
    for name, argv in commands:
        node = "learner" if name == "learner" else "rollout_worker"
        set_names = {
            argv[i + 1].split(":=")[0].removeprefix(f"{name}:")
            for i, a in enumerate(argv)
            if a == "-p"
        }
        assert set_names <= DECLARED[node], set_names - DECLARED[node]
    worker_argv = dict(commands)["rollout_worker_1"]
    assert "rollout_worker_1:policy_ids:=[1]" in worker_argv  # round-robin: 0,2 | 1


@pytest.mark.parametrize("launch_file", [*LAUNCH_FILES, "deploy.launch.py"])
def test_launch_nodes_take_node_scoped_overrides(launch_file: str) -> None:
    """Checked with a real `ros2 launch` (docs/training_stack.md): without a namespace,
    launch_ros writes a `parameters` dict under `/**`, which loses to the parameter file's own
    `<node>:` section, so launch arguments would be silently ignored."""
    for call in _launch_calls(REPO / "launch" / launch_file, "Node"):
        namespace = _keyword(call, "namespace")
        assert isinstance(namespace, ast.Constant) and namespace.value == "", launch_file


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_learner_gets_time_to_write_its_final_files(launch_file: str) -> None:
    """launch escalates SIGINT to SIGTERM after 5 s by default; the learner's last update and
    checkpoint take longer, so its `sigterm_timeout` must be raised."""
    learners = [
        c
        for c in _launch_calls(REPO / "launch" / launch_file, "Node")
        if getattr(_keyword(c, "executable"), "value", None) == "learner"
    ]
    assert len(learners) == 1
    assert _keyword(learners[0], "sigterm_timeout") is not None, launch_file
