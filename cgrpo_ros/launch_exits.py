"""What the launch files do when one of their nodes exits (OnProcessExit handlers).

Checked with a real `ros2 launch` (docs/training_stack.md): `Shutdown(reason=...)` ends a
launch with exit code 0 whatever the reason, so a learner that exited 2 left `ros2 launch` at
0 and a script could not tell the run failed (issue 16). The one way launch offers to end
non-zero is an exception raised while it handles an event: `LaunchService.run` then logs
"Caught exception in launch (see debug for traceback): <message>", shuts everything down and
returns 1, which `ros2 launch` exits with. So a node that exits with a non-zero code raises
`NodeFailedError` naming it. launch_testing ignores the launch's return code; its tests read
the nodes' exit codes from `proc_info` (test/launch/).

Imports nothing of `launch` at module level, so CI (which has no launch) tests the decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class NodeFailedError(RuntimeError):
    """A launched node exited with a non-zero code; the launch ends with exit code 1."""


def node_label(event: Any) -> str:
    """`learner (process learner-1, pid 123)`: the node name when launch_ros knows it."""
    try:
        node = str(event.action.node_name).lstrip("/")
    except (AttributeError, RuntimeError):  # a plain ExecuteProcess, or not yet expanded
        node = ""
    process = f"process {event.process_name}, pid {event.pid}"
    return f"{node} ({process})" if node else process


def exit_outcome(event: Any, *, ends_launch: bool) -> str | None:
    """The Shutdown reason for a clean exit of a node that ends the launch, else None.

    Raises NodeFailedError for a non-zero exit code (including a signal: -15, -9), so the
    launch stops every other node and exits 1 with a line naming the failed one.
    """
    code = int(event.returncode)
    if code != 0:
        raise NodeFailedError(
            f"{node_label(event)} exited with code {code}; stopping the launch (its last "
            "lines are above)"
        )
    return f"{node_label(event)} finished" if ends_launch else None


def on_node_exit(*, ends_launch: bool) -> Callable[[Any, Any], list[Any]]:
    """An `OnProcessExit(on_exit=...)` callable: fail loudly on an error, else maybe Shutdown."""

    def handle(event: Any, _context: Any) -> list[Any]:
        reason = exit_outcome(event, ends_launch=ends_launch)
        if reason is None:
            return []
        from launch.actions import Shutdown

        return [Shutdown(reason=reason)]

    return handle
