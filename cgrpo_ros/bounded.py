"""Bounded bookkeeping for data keyed by what arrives on a topic.

A learner on a shared network must not grow without limit when something floods it with
distinct worker ids or sequence numbers (issue 6): every table keyed by sender is capped,
forgetting the senders heard from least recently.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Generic, TypeVar

import numpy as np

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


# -- rendering untrusted content (issue 19) ----------------------------------------------------
# Anything a topic delivers (joint names, worker ids, values) may be arbitrarily large: one
# frame of 8 names of 1 MB each once made every policy_server status message 8 MB. Every node
# renders such content through `shown` (one value) or `bounded_text` (a whole message) before
# it reaches a log line, a status field or a service reply.
MAX_SHOWN_CHARS = 200  # one rendered value (a name, a list of names or values)
MAX_TEXT_CHARS = 2000  # one log line, error text or status field built from such values
_MAX_ITEM_CHARS = 40  # one item of a rendered sequence


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """`repr(value)` of untrusted content in at most about `limit` characters.

    Strings are cut with a note of their length; sequences (lists, tuples, arrays) show
    their first items and how many there are. Only what is shown is ever looked at, so a
    100,000-item list or a 1 MB string costs no more than a short one.
    """
    if isinstance(value, np.generic):
        value = value.item()  # 1.5, not np.float64(1.5)
    if isinstance(value, str | bytes | bytearray):
        if len(value) <= limit:
            return repr(value)
        unit = "chars" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}... ({len(value)} {unit})"
    if _is_sequence(value):
        items: list[str] = []
        used = 0
        count = len(value)  # type: ignore[arg-type]  # _is_sequence checked
        for k in range(count):
            item = shown(value[k], min(_MAX_ITEM_CHARS, limit))  # type: ignore[index]
            if used + len(item) > limit:
                break
            items.append(item)
            used += len(item) + 2
        more = count - len(items)
        return "[" + ", ".join(items) + (f", ... ({count} items)" if more else "") + "]"
    return bounded_text(repr(value), limit)


def bounded_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` cut to `limit` characters, with a note of its full length when cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} chars)"


def _is_sequence(value: object) -> bool:
    return (
        hasattr(value, "__len__")
        and hasattr(value, "__getitem__")
        and not isinstance(value, dict | str | bytes | bytearray)
    )


def strict_json(value: object) -> str:
    """`value` as strict JSON (RFC 8259): a non-finite float becomes null, never `Infinity`
    or `NaN`, which json.dumps writes by default and strict parsers refuse (issue 19)."""
    return json.dumps(_finite_or_none(value), allow_nan=False)


def _finite_or_none(value: object) -> object:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_finite_or_none(v) for v in value.tolist()]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value
