"""A training run: the CGRPO update plus what surrounds it (exports, checkpoints, logs).

`TrainingSession` is shared by the single-process trainer (`cgrpo train`, below) and the ROS
learner node, so both write the same run directory and the same summary.json. What a task is
(the env factory and `TaskSpec`) lives in `cgrpo_ros/tasks.py`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.cgrpo import CGRPO, IterationMetrics
from cgrpo_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.onnx_export import export_policy_onnx
from cgrpo_ros.core.policy_artifact import OnnxPolicy, PolicyMetadata
from cgrpo_ros.core.rollout import (
    GroupRolloutCollector,
    GroupSettings,
    RolloutCollector,
    collector_seed,
    sampling_rng,
)
from cgrpo_ros.core.signing import SigningKey, write_artifact
from cgrpo_ros.run_logging import (
    RunLogger,
    deployed_policy_id,
    prepare_run_dir,
    versions,
    write_summary,
)
from cgrpo_ros.tasks import TaskSpec, make_env

_log = logging.getLogger(__name__)
CHECKPOINT_NAME = "latest.ckpt"
PREVIOUS_CHECKPOINT_NAME = "previous.ckpt"


def all_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


class TrainingSession:
    """Owns the CGRPO state of one run and everything it writes into the run directory."""

    def __init__(
        self,
        *,
        task: TaskSpec,
        config: CGRPOConfig,
        run_dir: Path,
        resume: bool = False,
        checkpoint_every: int = 10,
        tensorboard: bool = True,
        signer: SigningKey | None = None,
        cluster_threads: int = 1,
    ) -> None:
        self.task = task
        # Signs every policy artifact this run writes or publishes (issue 18); None: unsigned.
        self.signer = signer
        self.run_dir = prepare_run_dir(run_dir, resume=resume)
        self.checkpoint_every = checkpoint_every
        self.env_steps = 0
        self.wall_offset = 0.0
        self.best_return = -math.inf
        self.best_policy: tuple[int, int] | None = None  # (policy id, version)
        self.final_returns: list[float] = [math.nan] * config.num_policies
        self.best_returns: list[float] = [-math.inf] * config.num_policies
        # Success rate beside return, for tasks that report info["is_success"] (issue 7).
        self.reports_success = False
        self.final_success_rates: list[float] = [math.nan] * config.num_policies
        self.best_success_rate = math.nan
        # Per-policy success rate of the last update's batches (nan: no episode ended there);
        # None when the task reports no success.
        self.last_success_rates: list[float] | None = None
        self.algo = CGRPO(config, task.obs_dim, task.act_dim, task.rest_action)
        # Checkpoints skipped on resume (corrupt, truncated), one message each: the learner
        # logs them, so a fallback to previous.ckpt is never silent (issue 6).
        self.resume_problems: list[str] = []
        self.resumed_from: Path | None = None
        if resume:
            self._resume()
        # Threads for Eq. 7's neighbour search (CGRPO.cluster_threads): all_cores() where this
        # process owns the machine while it clusters (`cgrpo train`, the learner).
        self.algo.cluster_threads = cluster_threads
        self.config = self.algo.config
        self.logger = RunLogger(self.run_dir, self.config.num_policies, tensorboard=tensorboard)
        self.started = time.perf_counter() - self.wall_offset

    @property
    def iteration(self) -> int:
        return self.algo.iteration

    def _resume(self) -> None:
        """Continue from the newest complete checkpoint; fall back to the previous one."""
        # A process killed while writing leaves only its temporary file (the rename that
        # makes latest.ckpt never happened): remove it, and say so.
        for unfinished in sorted((self.run_dir / "checkpoints").glob(".*.tmp")):
            unfinished.unlink(missing_ok=True)
            self.resume_problems.append(
                f"{unfinished.name} is a checkpoint write that never finished; removed"
            )
            _log.warning("removed %s, a checkpoint write that never finished", unfinished)
        errors = []
        for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):
            path = self.run_dir / "checkpoints" / name
            if not path.exists():
                continue
            try:
                self.algo, extra = load_checkpoint(path)
            except CheckpointError as exc:
                errors.append(str(exc))
                self.resume_problems.append(f"{exc}; trying the previous checkpoint")
                _log.warning("%s; trying the previous checkpoint", exc)
                continue
            self.resumed_from = path
            self.env_steps = int(extra.get("env_steps", 0))
            self.wall_offset = float(extra.get("wall_s", 0.0))
            self.best_return = _return_or(extra.get("best_return"))
            self.best_returns = [_return_or(x) for x in extra.get("best_returns", [])] or (
                self.best_returns
            )
            self.final_returns = [
                _return_or(x, math.nan) for x in extra.get("final_returns", [])
            ] or self.final_returns
            self.reports_success = bool(extra.get("reports_success", False))
            self.final_success_rates = [
                _rate_or_nan(x) for x in extra.get("final_success_rates", [])
            ] or self.final_success_rates
            self.best_success_rate = _rate_or_nan(extra.get("best_success_rate"))
            best = extra.get("best_policy")
            self.best_policy = (int(best[0]), int(best[1])) if best else None
            return
        detail = "; ".join(errors) if errors else "no checkpoint found"
        raise CheckpointError(f"cannot resume run {self.run_dir}: {detail}")

    def metadata(self, policy_id: int) -> PolicyMetadata:
        return self.task.policy_metadata(
            policy_id,
            self.algo.iteration,
            config_hash=self.config.config_hash(),
            extra=self.rollout_metadata(),
        )

    def rollout_metadata(self) -> dict[str, str]:
        """How workers must collect for this run (same-state groups), from the config."""
        groups = GroupSettings.from_config(self.config)
        return groups.to_metadata() if groups is not None else {}

    def policy_artifact(self, policy_id: int) -> bytes:
        """The current version of policy i as ONNX bytes (what workers and robots run)."""
        return export_policy_onnx(self.algo.policies[policy_id], self.metadata(policy_id))

    def signed_policy_artifact(self, policy_id: int) -> tuple[bytes, bytes | None]:
        """The artifact and its signature envelope (None without a signer)."""
        data = self.policy_artifact(policy_id)
        if self.signer is None:
            return data, None
        claims = self.metadata(policy_id).signed_claims()
        return data, self.signer.sign_policy(data, claims)

    def write_policy_file(self, path: Path, policy_id: int) -> None:
        """`path` (ONNX) and, with a signer, its detached signature `path.sig`."""
        write_artifact(
            path,
            self.policy_artifact(policy_id),
            self.signer,
            self.metadata(policy_id).signed_claims(),
        )

    def update(
        self,
        batches: Sequence[RolloutBatch],
        episode_successes: Sequence[Sequence[bool] | None] | None = None,
        wait_seconds: float = math.nan,
    ) -> IterationMetrics:
        """One CGRPO iteration on one batch per policy, then log, track best, checkpoint.

        `episode_successes[i]`: the success flag of each episode that ended in batch i
        (RolloutCollector.episode_successes), or None when the task reports no success.
        `wait_seconds`: the time spent getting the batches (metrics.csv, for the benchmarks).
        """
        success_rates = self._track_success(episode_successes, len(batches))
        self.last_success_rates = success_rates
        # Score the policies that collected this data before the update changes them.
        for i, batch in enumerate(batches):
            if len(batch.episode_returns):
                episode_return = float(np.mean(batch.episode_returns))
                self.final_returns[i] = episode_return
                self.best_returns[i] = max(self.best_returns[i], episode_return)
                if episode_return > self.best_return:
                    self.best_return = episode_return
                    self.best_policy = (i, self.algo.iteration)
                    self.write_policy_file(self.run_dir / "best.onnx", i)
        self.env_steps += sum(b.num_steps for b in batches)
        metrics = self.algo.update(batches)
        self.logger.log_iteration(
            metrics, self.env_steps, self.wall_s, success_rates, wait_seconds=wait_seconds
        )
        if self.algo.iteration % self.checkpoint_every == 0:
            self.save_checkpoint()
        return metrics

    def _track_success(
        self, episode_successes: Sequence[Sequence[bool] | None] | None, num_batches: int
    ) -> list[float] | None:
        """Per-policy success rate of this iteration's episodes (nan: no episode ended)."""
        if episode_successes is None or all(s is None for s in episode_successes):
            return None
        if len(episode_successes) != num_batches:
            raise ValueError(
                f"episode_successes has {len(episode_successes)} entries; expected one per "
                f"batch ({num_batches})"
            )
        self.reports_success = True
        rates = [float(np.mean(s)) if s else math.nan for s in episode_successes]
        for i, rate in enumerate(rates):
            if not math.isnan(rate):
                self.final_success_rates[i] = rate
                if math.isnan(self.best_success_rate) or rate > self.best_success_rate:
                    self.best_success_rate = rate
        return rates

    def success_summary(self) -> dict[str, Any]:
        """summary.json success keys, present only when the task reports `is_success`."""
        if not self.reports_success:
            return {}
        finals = [_finite_or_none(x) for x in self.final_success_rates]
        chosen = deployed_policy_id(self.final_returns)  # the policy a benchmark deploys
        return {
            "final_success_rate_per_policy": finals,
            "best_success_rate": _finite_or_none(self.best_success_rate),
            "success_rate": finals[chosen],
        }

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    def save_checkpoint(self) -> Path:
        directory = self.run_dir / "checkpoints"
        latest = directory / CHECKPOINT_NAME
        if latest.exists():
            latest.replace(directory / PREVIOUS_CHECKPOINT_NAME)
        # "Not measured yet" (-inf best, nan rate) is null: nan and inf are not valid JSON.
        extra = {
            "env_steps": self.env_steps,
            "wall_s": self.wall_s,
            "best_return": _finite_or_none(self.best_return),
            "best_returns": [_finite_or_none(x) for x in self.best_returns],
            "final_returns": [_finite_or_none(x) for x in self.final_returns],
            "best_policy": list(self.best_policy) if self.best_policy else None,
            "task": self.task.env_id,
            "reports_success": self.reports_success,
            "final_success_rates": [_finite_or_none(x) for x in self.final_success_rates],
            "best_success_rate": _finite_or_none(self.best_success_rate),
        }
        save_checkpoint(latest, self.algo, extra)
        return latest

    def finish(self, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Final checkpoint, final ONNX per policy, curves and summary.json."""
        self.save_checkpoint()
        for i in range(self.config.num_policies):
            self.write_policy_file(self.run_dir / f"policy_{i}.onnx", i)
        self.logger.plot_curves(f"CGRPO-{self.config.variant} on {self.task.env_id}")
        self.logger.close()
        summary = {
            "task": self.task.env_id,
            "variant": self.config.variant,
            "iterations": self.algo.iteration,
            "env_steps": self.env_steps,
            "wall_s": round(self.wall_s, 2),
            "env_steps_per_s": round(self.env_steps / max(self.wall_s, 1e-9), 1),
            "final_return_per_policy": [_finite_or_none(x) for x in self.final_returns],
            "best_return_per_policy": [_finite_or_none(x) for x in self.best_returns],
            "best_return": _finite_or_none(self.best_return),
            "best_policy": (
                {"policy_id": self.best_policy[0], "version": self.best_policy[1]}
                if self.best_policy
                else None
            ),
            **self.success_summary(),
            "config": self.config.to_dict(),
            "versions": versions(),
            **(extra or {}),
        }
        write_summary(self.run_dir, summary)
        return summary


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


# Checkpoints written before 2026-12 stored "not measured" as -1e300 (returns) and -1 (rates);
# they still resume.
_OLD_RETURN_SENTINEL = -1e299


def _return_or(value: float | None, missing: float = -math.inf) -> float:
    """A checkpoint's return: null (or an old sentinel) is `missing` (-inf: nothing yet)."""
    if value is None or float(value) <= _OLD_RETURN_SENTINEL:
        return missing
    return float(value)


def _rate_or_nan(value: float | None) -> float:
    """A checkpoint's success rate in [0, 1]; null (or the old -1) is nan, not measured."""
    return math.nan if value is None or float(value) < 0 else float(value)


def make_collector(
    env_id: str, groups: GroupSettings | None, seed: int
) -> RolloutCollector | GroupRolloutCollector:
    """The rollout of one policy: plain, or same-state groups (a simulator only)."""
    env = make_env(env_id)
    if groups is None:
        return RolloutCollector(env, seed=seed)
    from sim_bridge.sim_state import MujocoSnapshotter, check_snapshot_support

    check_snapshot_support(env)
    return GroupRolloutCollector(env, seed, settings=groups, snapshotter=MujocoSnapshotter())


def train_single_process(
    *,
    env_id: str,
    config: CGRPOConfig,
    iterations: int,
    steps_per_iteration: int,
    run_dir: Path,
    resume: bool = False,
    progress: Callable[[int, IterationMetrics, TrainingSession], None] | None = None,
    checkpoint_every: int = 10,
    signer: SigningKey | None = None,
    cluster_threads: int = 1,
) -> dict[str, Any]:
    """Algorithm 1 in one process: every policy acts through its own ONNX artifact.

    Acting through the exported artifact (not the torch module) keeps this path identical to
    the ROS path, where workers run what the learner publishes.
    """
    torch.set_num_threads(1)
    session = TrainingSession(
        task=TaskSpec.from_env(env_id),
        config=config,
        run_dir=run_dir,
        resume=resume,
        checkpoint_every=checkpoint_every,
        signer=signer,
        cluster_threads=cluster_threads,
    )
    n = session.config.num_policies
    seed = session.config.seed
    collectors = [
        make_collector(
            env_id,
            GroupSettings.from_config(session.config),
            collector_seed(seed, i, session.iteration, n),
        )
        for i in range(n)
    ]
    rngs = [sampling_rng(seed, i, session.iteration) for i in range(n)]
    while session.iteration < iterations:
        started = time.perf_counter()
        batches = []
        for i, collector in enumerate(collectors):
            runner = OnnxPolicy(session.policy_artifact(i))
            if isinstance(collector, GroupRolloutCollector):
                batch = collector.collect(runner.action_mean, runner.log_std, steps_per_iteration)
            else:
                batch = collector.collect(partial(runner.sample, rng=rngs[i]), steps_per_iteration)
            batches.append(batch)
        metrics = session.update(
            batches,
            [c.episode_successes for c in collectors],
            wait_seconds=time.perf_counter() - started,
        )
        if progress is not None:
            progress(session.iteration, metrics, session)
    for collector in collectors:
        collector.env.close()
    return session.finish(extra={"mode": "single_process", "workers": 0})
