"""Every executable setup.py installs answers `--help` / `-h` and starts nothing (issue 16).

Run as real subprocesses: the console script next to this Python when it is installed there
(the bootstrapped .venv), else its entry point (`module:function`) exactly as a console
script calls it. Each runs in an empty temporary folder on an isolated ROS domain: it must
exit 0, list what it takes, return promptly and leave the folder empty (no runs/, no log).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from package_layout import console_scripts

from cgrpo_ros.testing.ros_processes import isolated_ros_env

pytest.importorskip("rclpy")
pytestmark = pytest.mark.integration

# Starting a node takes seconds; a training or a served policy would not return at all.
HELP_TIMEOUT_S = 90.0
SCRIPTS = console_scripts()


def parameters_of(name: str) -> list[str]:
    """The parameter names a node's help must list (its own declarations)."""
    if name == "learner":
        from cgrpo_ros.nodes.learner import LEARNER_PARAMS

        return [s.name for s in LEARNER_PARAMS] + ["cgrpo.<field>"]
    if name == "rollout_worker":
        from cgrpo_ros.nodes.rollout_worker import WORKER_PARAMS

        return [s.name for s in WORKER_PARAMS]
    if name == "policy_server":
        from cgrpo_ros.nodes.policy_server import POLICY_SERVER_PARAMS

        return [s.name for s in POLICY_SERVER_PARAMS]
    if name == "sim_bridge":
        from sim_bridge.node import SIM_BRIDGE_PARAMS

        return [s.name for s in SIM_BRIDGE_PARAMS]
    raise AssertionError(f"{name}: a new executable needs its parameters listed here")


def run_executable(name: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / name
    if script.is_file():
        argv = [str(script), *args]
    else:
        module, function = SCRIPTS[name].split(":")
        code = f"import sys; from {module} import {function} as m; sys.argv[0] = {name!r}; "
        argv = [sys.executable, "-c", code + "sys.exit(m())", *args]
    return subprocess.run(
        argv,
        cwd=cwd,
        env=isolated_ros_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT_S,
    )


def test_every_console_script_is_covered() -> None:
    nodes = set(SCRIPTS) - {"cgrpo"}
    assert nodes == {"learner", "rollout_worker", "policy_server", "sim_bridge"}
    assert "cgrpo" in SCRIPTS


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - {"cgrpo"}))
def test_node_help_lists_its_parameters_and_starts_nothing(
    name: str, flag: str, tmp_path: Path
) -> None:
    result = run_executable(name, [flag], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"ros2 run cgrpo_ros {name}" in result.stdout
    missing = [p for p in parameters_of(name) if f"  {p}  (" not in result.stdout]
    assert not missing, f"{name} {flag} does not list {missing}:\n{output}"
    assert "[INFO]" not in output, f"{name} {flag} started a node:\n{output}"
    assert list(tmp_path.iterdir()) == [], f"{name} {flag} wrote files"


@pytest.mark.parametrize("name", ["learner", "sim_bridge"])
def test_node_refuses_a_parameter_given_outside_ros_args(name: str, tmp_path: Path) -> None:
    # A classic slip: `ros2 run cgrpo_ros learner iterations:=2` used to start a default run.
    result = run_executable(name, ["iterations:=2"], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--ros-args -p iterations:=2" in result.stderr
    assert list(tmp_path.iterdir()) == []


SUBCOMMANDS = ["train", "train-sim", "deploy", "export", "eval", "bench", "keygen", "verify"]


@pytest.mark.parametrize("args", [["--help"], ["-h"], *([s, "--help"] for s in SUBCOMMANDS)])
def test_cgrpo_help_starts_nothing(args: list[str], tmp_path: Path) -> None:
    result = run_executable("cgrpo", args, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage: cgrpo"), result.stdout
    if len(args) == 1:
        assert all(s in result.stdout for s in SUBCOMMANDS), result.stdout
    assert list(tmp_path.iterdir()) == []
