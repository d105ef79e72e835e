"""Fixtures shared by the whole suite.

Every test that starts nodes or DDS participants takes `ros_env` (or, for a module that keeps
one node up for all its tests, `module_ros_env`): a private ROS_DOMAIN_ID and localhost-only
discovery, for the test's child processes (the returned environment) and for the test
process's own probe nodes (set in os.environ for the test's duration, then restored).

pyproject.toml's `pythonpath` puts this folder on sys.path, so tests import the helpers that
live beside it (stack_helpers, server_helpers, package_layout) by name; tests never import
each other, and what benchmarks share with tests lives in cgrpo_ros/testing/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cgrpo_ros.testing.ros_processes import use_isolated_env


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private DDS domain for one test (cgrpo_ros.testing.ros_processes.isolated_ros_env)."""
    return use_isolated_env(monkeypatch)


@pytest.fixture(scope="module")
def module_ros_env() -> Iterator[dict[str, str]]:
    """A private DDS domain shared by the tests of one module (one server for all of them)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield use_isolated_env(monkeypatch)
