"""Turn `cgrpo bench` result files into docs/results.md, docs/results.json and figures."""

from __future__ import annotations

import json
import statistics
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

PAPER_HALFCHEETAH = {"cgrpo-full": 60.0, "cgrpo-simple": 30.0}  # section 7.3, after 500 it.


ROW_KEYS = ("method", "task", "seed", "budget_steps", "env_steps", "final_return",
            "steps_to_90pct", "wall_s", "env_steps_per_s", "perturbed_ratio",
            "success_rate")  # fmt: skip


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every finished run's result file under `out` (<task>/<method>/seed<k>-<budget>.json)."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/*/seed*.json"))]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, method, budget): mean, spread over seeds and the cost."""
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        grouped[(r["task"], r["method"], r["budget_steps"])].append(r)
    rows = []
    for (task, method, budget), runs in sorted(grouped.items()):
        runs = sorted(runs, key=lambda r: r["seed"])
        finals = [r["final_return"] for r in runs]
        reached = [r["steps_to_90pct"] for r in runs if r["steps_to_90pct"] is not None]
        successes = [r["success_rate"] for r in runs if r.get("success_rate") is not None]
        rows.append(
            {
                "task": task,
                "method": method,
                "budget_steps": budget,
                "seeds": sorted(r["seed"] for r in runs),
                "final_return_mean": statistics.mean(finals),
                "final_return_std_over_seeds": statistics.pstdev(finals),
                "final_return_per_seed": finals,
                "steps_to_90pct": f"{len(reached)}/{len(runs)} reached"
                + (f", median {int(statistics.median(reached)):,}" if reached else ""),
                "perturbed_ratio_mean": statistics.mean(r["perturbed_ratio"] for r in runs),
                "success_rate_mean": statistics.mean(successes) if successes else None,
                "wall_s_mean": statistics.mean(r["wall_s"] for r in runs),
                "env_steps_per_s_mean": statistics.mean(r["env_steps_per_s"] for r in runs),
                "paper": (  # the paper's figures are after 1M steps
                    PAPER_HALFCHEETAH.get(method)
                    if task.startswith("HalfCheetah") and budget == 1_000_000
                    else None
                ),
            }
        )
    return rows


def at_largest_budget(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs at each task's largest budget: curves of shorter runs (the 300k ablation on a
    1M task) would be extended flat beyond their end when averaged on the longer grid."""
    largest: dict[str, int] = {}
    for r in results:
        largest[r["task"]] = max(largest.get(r["task"], 0), r["budget_steps"])
    return [r for r in results if r["budget_steps"] == largest[r["task"]]]


def plot_curves(results: list[dict[str, Any]], figures: Path) -> list[Path]:
    """One panel per task: every method's mean curve over seeds, with min-max spread, at the
    task's largest budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figures.mkdir(parents=True, exist_ok=True)
    results = at_largest_budget(results)
    tasks = sorted({r["task"] for r in results})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in sorted({r["method"] for r in results if r["task"] == task}):
            runs = [r for r in results if r["task"] == task and r["method"] == method]
            budget = max(r["budget_steps"] for r in runs)
            grid = np.linspace(0, budget, 50)
            curves = []
            for r in runs:
                if r["curve"]:
                    points = np.asarray(r["curve"], dtype=float)  # [n, 2]: steps, return
                    steps, values = points[:, 0], points[:, 1]
                    curves.append(np.interp(grid, steps, values, left=np.nan))
            if not curves:
                continue
            stack = np.array(curves)
            with warnings.catch_warnings():
                # Before a method's first finished episode every seed is NaN: left blank.
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, low, high = (f(stack, axis=0) for f in (np.nanmean, np.nanmin, np.nanmax))
            ax.plot(grid, mean, label=f"{method} ({len(curves)} seeds)")
            ax.fill_between(grid, low, high, alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("training return")
        ax.grid(alpha=0.3)
        ax.legend()
    path = figures / "learning_curves.png"
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def plot_per_policy(results: list[dict[str, Any]], figures: Path) -> Path | None:
    """The paper's Figure 1 for each CGRPO run: every policy's training return, one row per
    variant, one column per task (line style = policy, colour = seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in at_largest_budget(results) if r.get("per_policy_curves")]
    if not runs:
        return None
    tasks = sorted({r["task"] for r in runs})
    variants = sorted({r["method"] for r in runs})
    fig, axes = plt.subplots(
        len(variants), len(tasks), figsize=(6 * len(tasks), 3.5 * len(variants)), squeeze=False
    )
    styles = ("-", "--", ":", "-.")
    for row, method in enumerate(variants):
        for col, task in enumerate(tasks):
            ax = axes[row][col]
            for r in sorted(runs, key=lambda r: r["seed"]):
                if (r["task"], r["method"]) != (task, method):
                    continue
                for i, curve in enumerate(r["per_policy_curves"]):
                    if curve:
                        steps, values = zip(*curve, strict=True)
                        ax.plot(steps, values, styles[i % len(styles)], color=f"C{r['seed']}",
                                lw=1, label=f"seed {r['seed']} policy {i}")  # fmt: skip
            ax.set_title(f"{method} on {task}")
            ax.set_xlabel("environment steps (all policies)")
            ax.set_ylabel("training return")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=6)
    path = figures / "per_policy_curves.png"
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(out: Path, docs: Path) -> list[dict[str, Any]]:
    results = load_results(out)
    rows = [{k: r.get(k) for k in ROW_KEYS} for r in results]  # older runs lack success_rate
    (docs / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    if results:
        plot_curves(results, docs / "figures")
        plot_per_policy(results, docs / "figures")
    return summary_rows(results)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | method | budget | seeds | final return (mean ± std over seeds) | per seed "
        "| steps to 90% of reference | perturbed / unperturbed | wall s | env steps/s | paper |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['method']} | {r['budget_steps']:,} | {r['seeds']} | "
            f"{_fmt(r['final_return_mean'])} ± {_fmt(r['final_return_std_over_seeds'])} | "
            f"{' / '.join(_fmt(x) for x in r['final_return_per_seed'])} | "
            f"{r['steps_to_90pct']} | {_fmt(r['perturbed_ratio_mean'], 2)} | "
            f"{_fmt(r['wall_s_mean'])} | {_fmt(r['env_steps_per_s_mean'])} | "
            f"{_fmt(r['paper'])} |"
        )
    return "\n".join(lines)
