"""The import arrows of docs/architecture.md ("Rooms and arrows"), checked on the code.

Every import of every module of `cgrpo_ros/` and `sim_bridge/` (module-level, function-level
and TYPE_CHECKING imports alike) must point to the importer's own room or a room above it,
the module graph must have no cycle, and the ROS-free rooms must not import rclpy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Rooms in order: a module may import from its own room and the rooms before it.
ROOMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("cgrpo_ros.core", "cgrpo_ros.share", "cgrpo_ros.bounded")),
    ("robot", ("cgrpo_ros.robot", "cgrpo_ros.wire")),
    ("deploy", ("cgrpo_ros.deploy",)),
    ("simulator", ("sim_bridge",)),
    ("training", ("cgrpo_ros.tasks", "cgrpo_ros.run_logging", "cgrpo_ros.session")),
    ("nodes", ("cgrpo_ros.nodes", "sim_bridge.node", "cgrpo_ros.launch_exits")),
    ("cli", ("cgrpo_ros.cli",)),
    ("testing", ("cgrpo_ros.testing",)),
)
ROS_FREE_ROOMS = ("core", "robot", "deploy", "simulator", "training")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in ("cgrpo_ros", "sim_bridge"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every absolute import target of a file (the project's modules resolved by name)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                targets.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return targets


def room(module: str) -> int:
    """Index of the room holding `module` (the longest matching prefix wins)."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(ROOMS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


GRAPH = {
    name: {t for t in _imports(path) if t in MODULES and t != name}
    for name, path in MODULES.items()
}


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m not in ("cgrpo_ros", "sim_bridge"))
)
def test_every_module_has_a_room(module: str) -> None:
    assert room(module) >= 0, f"{module} is in no room of docs/architecture.md"


def test_arrows_point_one_way() -> None:
    upward = [
        f"{src} ({ROOMS[room(src)][0]}) -> {dst} ({ROOMS[room(dst)][0]})"
        for src, targets in GRAPH.items()
        for dst in targets
        if room(src) >= 0 and room(dst) > room(src)
    ]
    assert not upward, "imports pointing up the rooms:\n" + "\n".join(sorted(upward))


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path, module, target]
            if target not in state:
                cycle = visit(target, [*path, module])
                if cycle:
                    return cycle
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_ros_free_rooms_never_import_rclpy() -> None:
    offenders = [
        name
        for name, path in MODULES.items()
        if room(name) >= 0
        and ROOMS[room(name)][0] in ROS_FREE_ROOMS
        and any(t == "rclpy" or t.startswith("rclpy.") for t in _imports(path))
    ]
    assert not offenders, f"ROS-free modules importing rclpy: {offenders}"


def test_the_room_check_can_fail() -> None:
    """The check itself: an arrow from core to a node is upward, one from a node to core not."""
    assert room("cgrpo_ros.nodes.learner") > room("cgrpo_ros.core.cgrpo")
    assert room("sim_bridge.node") == room("cgrpo_ros.nodes.params")
    assert room("sim_bridge.envs") < room("cgrpo_ros.session")
