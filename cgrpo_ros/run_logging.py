"""What every training run writes into its run directory (both the single process and ROS).

runs/<name>/ metrics.csv, tensorboard/, curves.png, checkpoints/, policy_<i>.onnx,
best.onnx, summary.json. Scripts read summary.json; nothing parses logs.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # run_logging stays light: the CLI and launch processes import it
    from cgrpo_ros.core.cgrpo import IterationMetrics

CSV_FIELDS = [
    "iteration", "env_steps", "wall_s", "policy_id", "group", "mean_episode_return",
    "episodes", "mean_reward", "entropy", "action_variance", "kl_to_reference", "clip_epsilon",
    "clip_fraction", "approx_kl", "surrogate", "smoothness", "reference_kl_loss",
    "num_state_clusters", "state_noise_fraction", "kmeans_seconds", "dbscan_seconds",
    "update_seconds", "success_rate", "wait_seconds",
]  # fmt: skip


class RunDirectoryError(ValueError):
    """The run directory cannot be used (it exists and resuming was not asked for)."""


def default_run_dir(env_id: str, variant: str) -> Path:
    """runs/<task>-<variant>-<date>-<time>: where a run goes when no --run-dir is given."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{env_id.replace('/', '_')}-{variant}-{stamp}"


def prepare_run_dir(run_dir: Path, *, resume: bool) -> Path:
    """Create the run directory; refuse to write into an existing run unless resuming."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise RunDirectoryError(
            f"run directory {run_dir} already holds a run; pass --resume to continue it or "
            "choose another --run-dir (runs are never silently overwritten)"
        )
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return run_dir


def versions() -> dict[str, str]:
    import gymnasium
    import mujoco
    import numpy
    import onnxruntime
    import sklearn
    import torch

    from cgrpo_ros import __version__

    return {
        "cgrpo_ros": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "mujoco": mujoco.__version__,
        "gymnasium": gymnasium.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


class RunLogger:
    """CSV + TensorBoard per policy per iteration, learning curves and summary.json."""

    def __init__(self, run_dir: Path, num_policies: int, *, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.num_policies = num_policies
        self.csv_path = self.run_dir / "metrics.csv"
        new_file = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        # A resumed run keeps the columns its file was started with (a run from before the
        # success_rate column stays a valid CSV; the new column is simply not written).
        self.fields = CSV_FIELDS if new_file else self._existing_fields()
        self._csv_handle = self.csv_path.open("a", newline="")
        self._csv = csv.DictWriter(
            self._csv_handle, fieldnames=self.fields, extrasaction="ignore", restval=""
        )
        if new_file:
            self._csv.writeheader()
        self._writer: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        # curve[i] = [(env_steps, mean episode return)] for the learning-curve plot.
        self.curves: list[list[tuple[int, float]]] = [[] for _ in range(num_policies)]
        self._load_curves()

    def _existing_fields(self) -> list[str]:
        with self.csv_path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
        return list(header) if header else CSV_FIELDS

    def _load_curves(self) -> None:
        if self.csv_path.stat().st_size == 0:
            return
        with self.csv_path.open() as handle:
            for row in csv.DictReader(handle):
                value = float(row["mean_episode_return"] or "nan")
                if not math.isnan(value):
                    self.curves[int(row["policy_id"])].append((int(row["env_steps"]), value))

    def log_iteration(
        self,
        metrics: IterationMetrics,
        env_steps: int,
        wall_s: float,
        success_rates: list[float] | None = None,
        wait_seconds: float = math.nan,
    ) -> None:
        """One CSV row per policy; `success_rates[i]` (nan: no episode ended) when the task
        reports success, else the success_rate column stays empty. `wait_seconds`: how long
        the trainer waited for this iteration's batches (collection, and through ROS the DDS
        hops and the workers' own work too; docs/benchmarks.md splits it)."""
        shared = {
            "iteration": metrics.iteration,
            "env_steps": env_steps,
            "wall_s": round(wall_s, 3),
            "num_state_clusters": metrics.num_state_clusters,
            "state_noise_fraction": metrics.state_noise_fraction,
            "kmeans_seconds": metrics.kmeans_seconds,
            "dbscan_seconds": metrics.dbscan_seconds,
            "update_seconds": metrics.update_seconds,
            "wait_seconds": "" if math.isnan(wait_seconds) else round(wait_seconds, 4),
        }
        for policy in metrics.policies:
            row = {**shared, **asdict(policy), "success_rate": ""}
            if success_rates is not None:
                row["success_rate"] = success_rates[policy.policy_id]
            self._csv.writerow(row)
            if not math.isnan(policy.mean_episode_return):
                self.curves[policy.policy_id].append((env_steps, policy.mean_episode_return))
            if self._writer is not None:
                prefix = f"policy_{policy.policy_id}"
                for key in ("mean_episode_return", "mean_reward", "entropy", "kl_to_reference"):
                    self._writer.add_scalar(f"charts/{prefix}/{key}", row[key], env_steps)
                for key in ("clip_epsilon", "clip_fraction", "approx_kl", "surrogate"):
                    self._writer.add_scalar(f"losses/{prefix}/{key}", row[key], env_steps)
                if success_rates is not None:
                    rate = success_rates[policy.policy_id]
                    self._writer.add_scalar(f"charts/{prefix}/success_rate", rate, env_steps)
        if self._writer is not None:
            for key in ("num_state_clusters", "dbscan_seconds", "kmeans_seconds"):
                self._writer.add_scalar(f"clustering/{key}", shared[key], env_steps)
            self._writer.add_scalar("losses/diversity", metrics.diversity, env_steps)
        self._csv_handle.flush()

    def plot_curves(self, title: str) -> Path:
        """One line per policy: mean episode return against environment steps (Figure 1)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for policy_id, curve in enumerate(self.curves):
            if curve:
                steps, values = zip(*curve, strict=True)
                ax.plot(steps, values, label=f"policy {policy_id + 1}")
        ax.set_xlabel("environment steps (all policies)")
        ax.set_ylabel("mean episode return")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        path = self.run_dir / "curves.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def close(self) -> None:
        self._csv_handle.close()
        if self._writer is not None:
            self._writer.close()


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    from cgrpo_ros.core.checkpoint import atomic_write_bytes

    path = Path(run_dir) / "summary.json"
    summary = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **summary}
    text = json.dumps(summary, indent=2, sort_keys=True, default=_json_default)
    atomic_write_bytes(path, text.encode())
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to summary.json")


def read_return_curves(metrics_csv: Path) -> dict[int, list[tuple[int, float]]]:
    """Policy id -> (env steps, mean episode return) of every iteration in which its episodes
    ended, from a run's metrics.csv (what the benchmarks and the CLI's summary read)."""
    curves: dict[int, list[tuple[int, float]]] = {}
    with Path(metrics_csv).open(newline="") as handle:
        for row in csv.DictReader(handle):
            value = float(row["mean_episode_return"] or "nan")
            if not math.isnan(value):
                curves.setdefault(int(row["policy_id"]), []).append((int(row["env_steps"]), value))
    return curves


def return_improvement(
    metrics_csv: Path,
) -> tuple[tuple[int, float], tuple[int, float]] | None:
    """(env steps, mean episode return over the policies) at the first and the last iteration
    in which episodes ended, from metrics.csv; None when fewer than two such iterations.

    Every row of one iteration carries the same env_steps (the run's total after it)."""
    try:
        curves = read_return_curves(metrics_csv)
    except (OSError, KeyError, ValueError):
        return None
    by_iteration: dict[int, list[float]] = {}
    for curve in curves.values():
        for steps, value in curve:
            by_iteration.setdefault(steps, []).append(value)
    if len(by_iteration) < 2:
        return None
    first, last = min(by_iteration), max(by_iteration)
    return (
        (first, sum(by_iteration[first]) / len(by_iteration[first])),
        (last, sum(by_iteration[last]) / len(by_iteration[last])),
    )


def deployed_policy_id(final_returns: Sequence[float | None]) -> int:
    """The policy a run deploys: the best final training return (None or nan: never chosen
    over a measured one). Chosen from data already paid for, never by extra episodes."""
    scores = [x if x is not None and math.isfinite(x) else -math.inf for x in final_returns]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
