"""Bounded bookkeeping for data keyed by what arrives on a topic.

A learner on a shared network must not grow without limit when something floods it with
distinct worker ids or sequence numbers (issue 6): every table keyed by sender is capped,
forgetting the senders heard from least recently.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_TRACKED_WORKERS = 256
SEQS_PER_WORKER = 1024


class RecentTable(OrderedDict[str, V], Generic[V]):
    """A dict of at most `limit` keys; setting a key makes it the newest, the oldest go."""

    def __init__(self, limit: int = MAX_TRACKED_WORKERS) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError(f"limit={limit} must be >= 1")
        self.limit = limit

    def __setitem__(self, key: str, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class DuplicateGuard:
    """Has this (worker, seq) been seen? Remembers the last SEQS_PER_WORKER of each worker.

    Workers number their batches 0, 1, 2, ...; a replay older than the window is refused as
    well, since it is below the oldest remembered number of that worker.
    """

    def __init__(
        self, max_workers: int = MAX_TRACKED_WORKERS, per_worker: int = SEQS_PER_WORKER
    ) -> None:
        self.per_worker = per_worker
        self._seen: RecentTable[OrderedDict[int, None]] = RecentTable(max_workers)

    def check_and_remember(self, worker_id: str, seq: int) -> bool:
        """True if (worker_id, seq) is new (and now remembered), False for a duplicate."""
        seqs = self._seen.get(worker_id)
        if seqs is None:
            seqs = OrderedDict()
        elif seq in seqs or (len(seqs) >= self.per_worker and seq < next(iter(seqs))):
            return False
        seqs[seq] = None
        while len(seqs) > self.per_worker:
            seqs.popitem(last=False)
        self._seen[worker_id] = seqs  # also marks the worker as most recently heard
        return True

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())
