"""Repeat the fault and hostile-input tests N times and print the table of docs/reliability.md.

    .venv/bin/python benchmarks/reliability_report.py --repeats 3

Each test appends its measurements (time to detect, to recover, steps lost, frames refused)
to a JSON-lines file named by CGRPO_RELIABILITY_FIGURES; this script runs pytest with that
set, then groups the lines by fault. The multi-host test needs root (it skips otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TESTS = [
    "test/integration/test_faults.py",
    "test/integration/test_hostile_input.py",
    "test/integration/test_multi_host.py",
]


def _span(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:.1f}" if lo == hi else f"{lo:.1f}-{hi:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--figures", type=Path, default=None, help="reuse a figures file")
    args = parser.parse_args()
    figures = args.figures
    failures = 0
    if figures is None:
        figures = Path(tempfile.mkstemp(prefix="reliability_", suffix=".jsonl")[1])
        env = {**os.environ, "CGRPO_RELIABILITY_FIGURES": str(figures)}
        for _ in range(args.repeats):
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
            failures += subprocess.run(cmd, cwd=REPO, env=env).returncode != 0
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in figures.read_text().splitlines():
        record = json.loads(line)
        rows[record.pop("fault")].append(record)
    print(
        "| Fault or input | Runs | Lost steps | Detected after [s] | Recovered after [s] | Notes |"
    )
    print("|---|---|---|---|---|---|")
    for fault, records in rows.items():
        lost = sum(int(r.get("steps_lost", 0)) for r in records)
        detected = _span([r["detected_s"] for r in records if "detected_s" in r])
        recovered = _span(
            [
                float(r["recovered_s"] if "recovered_s" in r else r["shutdown_s"])
                for r in records
                if "recovered_s" in r or "shutdown_s" in r
            ]
        )
        notes = {k: v for k, v in records[-1].items() if k not in
                 ("steps_lost", "detected_s", "recovered_s", "shutdown_s")}  # fmt: skip
        print(f"| {fault} | {len(records)} | {lost} | {detected} | {recovered} | {notes} |")
    print(f"\n(figures: {figures}; pytest runs with failures: {failures})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
