"""Bounded per-sender tables (issue 6: memory stays bounded under hostile input)."""

from __future__ import annotations

from cgrpo_ros.bounded import DuplicateGuard, RecentTable


def test_recent_table_forgets_the_least_recently_set_key() -> None:
    table: RecentTable[int] = RecentTable(limit=2)
    table["a"], table["b"] = 1, 2
    table["a"] = 3  # refreshes a
    table["c"] = 4
    assert list(table) == ["a", "c"]


def test_duplicate_guard_detects_replays_within_and_below_the_window() -> None:
    guard = DuplicateGuard(max_workers=2, per_worker=3)
    assert all(guard.check_and_remember("w", s) for s in range(5))
    assert not guard.check_and_remember("w", 4)  # an exact replay
    assert not guard.check_and_remember("w", 0)  # older than the remembered window
    assert len(guard) == 3


def test_duplicate_guard_memory_is_bounded_under_a_flood_of_ids() -> None:
    guard = DuplicateGuard(max_workers=8, per_worker=4)
    for i in range(10_000):
        guard.check_and_remember(f"intruder-{i}", i)
    assert len(guard) <= 8 * 4
    assert guard.check_and_remember("honest", 0)
