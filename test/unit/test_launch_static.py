"""Static checks of the launch files, parameter files and launch tests (no `launch` needed).

Every executable a launch file names is a console script of setup.py, every parameter file
exists and is installed, and every parameter set by a YAML file, a launch file or `cgrpo
train-sim` is declared by the node that receives it (each node keeps a module-level
DECLARED_PARAMETERS tuple). The launch tests (test/launch/, skipped where launch_testing is
missing, i.e. in CI) take their launch files from the installed share and pass only arguments
the launch files declare, and their docstrings document only arguments they pass (issue 16).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from package_layout import console_scripts, installed_share_files

from cgrpo_ros.cli.train_sim import build_commands
from cgrpo_ros.core.run_shape import RUN_SHAPE, WORKER_SHAPE_FIELDS
from cgrpo_ros.nodes import learner, policy_server, rollout_worker
from sim_bridge import node as sim_bridge_node

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = ("train_sim.launch.py", "train_sim_robot.launch.py")
ALL_LAUNCH_FILES = sorted(p.name for p in (REPO / "launch").glob("*.launch.py"))
PARAM_FILES = ("train_sim.yaml", "train_sim_robot.yaml")
LAUNCH_TESTS = sorted((REPO / "test" / "launch").glob("test_*.py"))


def _console_scripts() -> set[str]:
    return set(console_scripts())


DECLARED = {
    "learner": set(learner.DECLARED_PARAMETERS),
    "rollout_worker": set(rollout_worker.DECLARED_PARAMETERS),
    "sim_bridge": set(sim_bridge_node.DECLARED_PARAMETERS),
    "policy_server": set(policy_server.DECLARED_PARAMETERS),
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
    """A module-level constant of a launch file, without importing it (`launch` may be
    missing): its top-level assignments are evaluated in order, with the run-shape names the
    launch files import from cgrpo_ros.core.run_shape (the one declaration they derive from)."""
    namespace: dict[str, Any] = {"RUN_SHAPE": RUN_SHAPE, "WORKER_SHAPE_FIELDS": WORKER_SHAPE_FIELDS}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            with contextlib.suppress(NameError):  # e.g. a value built from a launch import
                exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    return tuple(namespace.get(name, ()))


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
    installed = installed_share_files()
    for name in named:
        assert (REPO / "config" / name).is_file(), f"{launch_file} names missing config/{name}"
        # setup.py's data_files put it where the launch file looks: share/cgrpo_ros/config.
        assert f"config/{name}" in installed, f"config/{name} is not in setup.py's data_files"
    assert f"launch/{launch_file}" in installed


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
def test_training_nodes_get_time_to_finish(launch_file: str) -> None:
    """launch escalates SIGINT to SIGTERM after 5 s by default; the learner's last update and
    checkpoint, and a worker's last batch on a loaded machine, take longer, so their
    `sigterm_timeout` must be raised."""
    for executable in ("learner", "rollout_worker"):
        nodes = [
            c
            for c in _launch_calls(REPO / "launch" / launch_file, "Node")
            if getattr(_keyword(c, "executable"), "value", None) == executable
        ]
        assert len(nodes) == 1, (launch_file, executable)
        assert _keyword(nodes[0], "sigterm_timeout") is not None, (launch_file, executable)


def _declared_arguments(launch_file: str) -> set[str]:
    """The launch arguments a launch file declares: its ARGUMENTS tuple, or the constant first
    argument of each DeclareLaunchArgument call."""
    path = REPO / "launch" / launch_file
    names = {a[0] for a in _module_tuple(path, "ARGUMENTS")}
    for call in _launch_calls(path, "DeclareLaunchArgument"):
        first = call.args[0] if call.args else None
        if isinstance(first, ast.Constant):
            names.add(first.value)
    assert names, f"{launch_file} declares no arguments"
    return names


def _share_joins(tree: ast.AST) -> list[tuple[ast.Call, str]]:
    """os.path.join(get_package_share_directory("cgrpo_ros"), "a", "b") -> (call, "a/b")."""
    joins = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "os.path.join"):
            continue
        first = node.args[0] if node.args else None
        if (
            isinstance(first, ast.Call)
            and ast.unparse(first.func) == "get_package_share_directory"
            and ast.literal_eval(first.args[0]) == "cgrpo_ros"
        ):
            parts = [ast.literal_eval(a) for a in node.args[1:]]
            joins.append((node, "/".join(parts)))
    return joins


def _included_launch_arguments(tree: ast.AST) -> list[tuple[str, set[str]]]:
    """(share-relative launch file, argument names) of every IncludeLaunchDescription."""
    joins = {id(call): rel for call, rel in _share_joins(tree)}
    assigned = {
        target.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    includes = []
    for call in _launch_calls_in(tree, "IncludeLaunchDescription"):
        source = call.args[0]
        assert isinstance(source, ast.Call) and source.args, ast.unparse(call)
        where = source.args[0]
        if isinstance(where, ast.Name):  # launch_file = os.path.join(...)
            where = assigned[where.id]
        assert id(where) in joins, (
            f"{ast.unparse(source)}: launch tests include the installed launch file, "
            'os.path.join(get_package_share_directory("cgrpo_ros"), "launch", ...)'
        )
        arguments = _keyword(call, "launch_arguments")
        assert isinstance(arguments, ast.Call), ast.unparse(call)  # {...}.items()
        mapping = arguments.func.value  # type: ignore[attr-defined]
        assert isinstance(mapping, ast.Dict)
        keys = {ast.literal_eval(k) for k in mapping.keys if k is not None}
        includes.append((joins[id(where)], keys))
    return includes


def _launch_calls_in(tree: ast.AST, func: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == func
    ]


@pytest.mark.parametrize("test_file", LAUNCH_TESTS, ids=lambda p: p.name)
def test_launch_tests_use_the_installed_share(test_file: Path) -> None:
    """No launch test reads launch/ or config/ from the source tree: a file missing from
    setup.py's data_files must fail them, as it fails `ros2 launch`."""
    tree = ast.parse(test_file.read_text())
    installed = installed_share_files()
    in_joins = set()
    for call, relative in _share_joins(tree):
        assert relative in installed, f"{test_file.name}: share/cgrpo_ros/{relative} not installed"
        in_joins |= {id(a) for a in call.args}
    for node in ast.walk(tree):  # [ros2, "launch", "cgrpo_ros", ...]: the ros2 subcommand
        if isinstance(node, ast.List):
            for here, after in itertools.pairwise(node.elts):
                if isinstance(after, ast.Constant) and after.value == "cgrpo_ros":
                    in_joins.add(id(here))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if value.endswith((".launch.py", ".yaml")) or value in ("launch", "config"):
                # The exit-code test names installed launch files for `ros2 launch cgrpo_ros X`.
                assert id(node) in in_joins or value in ALL_LAUNCH_FILES, (
                    f"{test_file.name}: {value!r} outside a get_package_share_directory path"
                )
    assert "parents[2]" not in test_file.read_text(), f"{test_file.name} uses the source tree"


@pytest.mark.parametrize("test_file", LAUNCH_TESTS, ids=lambda p: p.name)
def test_launch_tests_pass_and_document_declared_arguments(test_file: Path) -> None:
    source = test_file.read_text()
    tree = ast.parse(source)
    passed: set[str] = set()
    for relative, keys in _included_launch_arguments(tree):
        launch_file = relative.removeprefix("launch/")
        undeclared = keys - _declared_arguments(launch_file)
        assert not undeclared, f"{test_file.name} passes {undeclared} to {launch_file}"
        passed |= keys
    for launch_file, arguments, _failing, _stopped in _module_tuple(test_file, "CASES"):
        keys = {a.split(":=")[0] for a in arguments}
        undeclared = keys - _declared_arguments(launch_file)
        assert not undeclared, f"{test_file.name} passes {undeclared} to {launch_file}"
        passed |= keys | ({"run_dir"} if launch_file.startswith("train") else set())
    assert passed, f"{test_file.name} passes no launch arguments"
    docstring = ast.get_docstring(tree) or ""
    documented = set(re.findall(r"(\w+):=", docstring))
    assert documented <= passed, (
        f"{test_file.name}'s docstring documents {documented - passed}, which it never passes"
    )
    # `launch_test FILE name:=value` only reaches a test that declares `name` itself.
    own = {ast.literal_eval(c.args[0]) for c in _launch_calls_in(tree, "DeclareLaunchArgument")}
    for line in docstring.splitlines():
        if "launch_test " in line:
            given = set(re.findall(r"(\w+):=", line))
            assert given <= own, f"{test_file.name}: `{line.strip()}` but it declares no {given}"


TEST_FILES = sorted((REPO / "test").rglob("*.py"))
FIXED_TMP = str(Path("/", "tmp"))  # not a literal, or this file would match itself


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_tests_use_no_fixed_temporary_paths(test_file: Path) -> None:
    """Tests write into folders of their own (tmp_path, tempfile), never a fixed /tmp path:
    two runs at once would collide (issue 16: /tmp/cgrpo_deploy_launch_test.onnx)."""
    for node in ast.walk(ast.parse(test_file.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not node.value.startswith(FIXED_TMP), f"{test_file.name}: {node.value!r}"


@pytest.mark.parametrize("launch_file", ALL_LAUNCH_FILES)
def test_node_parameter_dicts_are_declared(launch_file: str) -> None:
    """Literal `parameters=[..., {"name": ...}]` entries name parameters the node declares."""
    for call in _launch_calls(REPO / "launch" / launch_file, "Node"):
        executable = _keyword(call, "executable").value
        parameters = _keyword(call, "parameters")
        for entry in getattr(parameters, "elts", []):
            if isinstance(entry, ast.Dict):
                keys = {ast.literal_eval(k) for k in entry.keys if k is not None}
                assert keys <= DECLARED[executable], (launch_file, keys - DECLARED[executable])
