"""cgrpo_ros/launch_exits.py: what the launch files do when a node exits.

`launch` is not installable here, so the event is a stand-in with the attributes launch's
ProcessExited event has (action.node_name, process_name, pid, returncode); the handlers
themselves ran in a real `ros2 launch` (docs/training_stack.md) and run in
test/launch/test_launch_exit_codes.py on a ROS install.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cgrpo_ros.launch_exits import NodeFailedError, exit_outcome, node_label, on_node_exit


@dataclass
class LaunchedNode:
    node_name: str


@dataclass
class ProcessExited:
    action: object
    process_name: str
    pid: int
    returncode: int


def exited(code: int, node: str = "/learner") -> ProcessExited:
    return ProcessExited(LaunchedNode(node), "learner-1", 4242, code)


@pytest.mark.parametrize("code", [1, 2, -9, -15])
def test_an_error_exit_fails_the_launch_naming_the_node(code: int) -> None:
    for ends_launch in (True, False):
        with pytest.raises(NodeFailedError) as err:
            exit_outcome(exited(code), ends_launch=ends_launch)
        assert f"learner (process learner-1, pid 4242) exited with code {code}" in str(err.value)
    with pytest.raises(NodeFailedError):
        on_node_exit(ends_launch=False)(exited(code), None)


def test_a_clean_exit_ends_the_launch_only_for_the_node_that_owns_it() -> None:
    assert (
        exit_outcome(exited(0), ends_launch=True)
        == "learner (process learner-1, pid 4242) finished"
    )
    assert exit_outcome(exited(0), ends_launch=False) is None
    # A worker leaving after the learner's `done`: no action, the launch keeps its course.
    assert on_node_exit(ends_launch=False)(exited(0, "/rollout_worker_1"), None) == []


def test_label_without_a_node_name() -> None:
    class NotExpanded:
        @property
        def node_name(self) -> str:
            raise RuntimeError("cannot access 'node_name' before executing action")

    event = ProcessExited(NotExpanded(), "sim_bridge-3", 7, 2)
    assert node_label(event) == "process sim_bridge-3, pid 7"
