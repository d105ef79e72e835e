"""The `learner` node: CGRPO on the workers' trajectories; new policies back on a latched topic.

Topics and services (QoS in docs/training_stack.md):
    subscribes  /cgrpo/trajectories    std_msgs/UInt8MultiArray  trajectory frames
    subscribes  /cgrpo/worker_status   std_msgs/String           JSON (liveness)
    publishes   /cgrpo/policies        std_msgs/UInt8MultiArray  policy frames, transient local
    publishes   /cgrpo/metrics         std_msgs/String           JSON, one per iteration
    publishes   /cgrpo/learner_status  std_msgs/String           JSON, transient local, ~1 Hz
    service     ~/save_checkpoint      std_srvs/Trigger
    service     ~/stop                 std_srvs/Trigger          finish cleanly (exit 0)

All maths and files are `TrainingSession`'s (the same as `cgrpo train`). The update runs in the
main thread; the node spins in a background thread, so services answer during an update.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from pathlib import Path
from typing import Any

import torch
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_msgs.msg import String, UInt8MultiArray
from std_srvs.srv import Trigger

from cgrpo_ros.bounded import RecentTable, bounded_text
from cgrpo_ros.core.cgrpo import IterationMetrics
from cgrpo_ros.core.run_shape import SHAPE_FIELDS, RunShape
from cgrpo_ros.core.signing import SignatureError
from cgrpo_ros.nodes.batch_intake import BatchIntake
from cgrpo_ros.nodes.params import (
    ParameterError,
    ParamSpec,
    StopFlag,
    config_from_parameters,
    config_parameter_names,
    declare_parameters,
    latched_qos,
    load_signing_key,
    load_trusted_keys,
    node_main,
    shape_parameters,
)
from cgrpo_ros.nodes.topics import (
    LEARNER_STATUS_TOPIC,
    METRICS_TOPIC,
    POLICIES_TOPIC,
    TRAJECTORIES_TOPIC,
    WORKER_STATUS_TOPIC,
)
from cgrpo_ros.wire.frame import WireFormatError, from_uint8_msg, to_uint8_msg
from cgrpo_ros.wire.metrics import decode_metrics, encode_metrics
from cgrpo_ros.wire.policy import encode_policy
from cgrpo_ros.wire.trajectory import DecodedTrajectory, decode_trajectory

NODE_NAME = "learner"
STATUS_PERIOD_S = 1.0
REJECT_LOG_PERIOD_S = 5.0  # one line per rejection reason at most this often
DONE_LINGER_S = 3.0  # keep the latched `done` alive while workers read it

LEARNER_PARAMS = (
    ParamSpec("env_id", "HalfCheetah-v5", "gymnasium task id the policies are trained on."),
    ParamSpec("variant", "full", "CGRPO variant (paper section 7).", choices=("full", "simple")),
    *shape_parameters(tuple(SHAPE_FIELDS)),  # N, K, iterations, T, seed (core/run_shape.py)
    ParamSpec("run_dir", "", "Run directory; empty: runs/<task>-<variant>-<time>."),
    ParamSpec("resume", False, "Continue the run in run_dir from its latest checkpoint."),
    ParamSpec("config_file", "", "YAML/JSON file of CGRPOConfig overrides; empty: none."),
    ParamSpec(
        "checkpoint_every",
        10,
        "Checkpoint every this many iterations.",
        (1, 10**9),
        read_only=False,
    ),
    ParamSpec(
        "worker_timeout_s",
        60.0,
        "Warn when a policy's workers are silent this long [s].",
        (0.1, 1e6),
        read_only=False,
    ),
    ParamSpec(
        "signing_key",
        "",
        "Ed25519 private key file (cgrpo keygen; mode 0600) signing every policy frame and "
        ".onnx file; empty: unsigned (docs/security.md).",
    ),
    ParamSpec(
        "trusted_worker_keys",
        Parameter.Type.STRING_ARRAY,
        "Public key files of the workers; set: only trajectory frames signed by one of them "
        "are used. Unset: unsigned frames are accepted (docs/security.md).",
    ),
)
DECLARED_PARAMETERS = tuple(spec.name for spec in LEARNER_PARAMS) + config_parameter_names()


class LearnerNode(Node):
    """Gathers one batch per policy and version; the main thread runs `train()`."""

    def __init__(self, stop: StopFlag, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        from cgrpo_ros.run_logging import default_run_dir
        from cgrpo_ros.session import TrainingSession, all_cores
        from cgrpo_ros.tasks import TaskSpec

        self.stop = stop
        self.params = p = declare_parameters(self, LEARNER_PARAMS)
        self.shape = RunShape.from_mapping(p)
        config = config_from_parameters(
            self, variant=p["variant"], shape=self.shape, config_file=p["config_file"]
        )
        run_dir = (
            Path(p["run_dir"]) if p["run_dir"] else default_run_dir(p["env_id"], config.variant)
        )
        try:
            task = TaskSpec.from_env(p["env_id"])
        except Exception as err:  # gymnasium raises several types for an unknown id
            raise ParameterError(f"parameter 'env_id' = {p['env_id']!r}: {err}") from None
        signer = load_signing_key("signing_key", p["signing_key"])
        self.trusted_workers = load_trusted_keys("trusted_worker_keys", p["trusted_worker_keys"])
        try:
            self.session = TrainingSession(
                task=task,
                config=config,
                run_dir=run_dir,
                resume=p["resume"],
                checkpoint_every=p["checkpoint_every"],
                signer=signer,
                cluster_threads=all_cores(),  # the workers wait while the learner clusters
            )
        except ValueError as err:  # RunDirectoryError, CheckpointError: say what to change
            raise ParameterError(f"parameters 'run_dir'/'resume': {err}") from None
        self.num_policies = self.session.config.num_policies
        self.lock = threading.Condition()
        self.session_lock = threading.Lock()  # held by update and checkpoint writes
        self.intake = BatchIntake(
            task=task,
            num_policies=self.num_policies,
            steps_per_iteration=self.shape.steps_per_iteration,
            group_size=self.session.config.group_size,
            version=self.session.iteration,
        )
        self._reject_logged: dict[str, float] = {}
        # Keyed by what senders claim: bounded, so a flood of invented ids cannot grow memory.
        self.workers: RecentTable[dict[str, Any]] = RecentTable()  # worker id -> last status
        self.stalled: list[int] = []
        self.save_requested = False
        self.done = False
        n = self.num_policies
        # Latched depth n: a late or restarted worker gets the newest version of every policy.
        self.policy_pub = self.create_publisher(UInt8MultiArray, POLICIES_TOPIC, latched_qos(n))
        self.metrics_pub = self.create_publisher(String, METRICS_TOPIC, 10)
        self.status_pub = self.create_publisher(String, LEARNER_STATUS_TOPIC, latched_qos(1))
        traj_qos = QoSProfile(depth=max(10, 2 * n))  # reliable; room for every policy's batch
        self.create_subscription(UInt8MultiArray, TRAJECTORIES_TOPIC, self.on_trajectory, traj_qos)
        self.create_subscription(String, WORKER_STATUS_TOPIC, self.on_worker_status, 10)
        self.create_service(Trigger, "~/save_checkpoint", self.on_save_checkpoint)
        self.create_service(Trigger, "~/stop", self.on_stop)
        self.create_timer(STATUS_PERIOD_S, self.publish_status)
        for problem in self.session.resume_problems:
            self.get_logger().error(f"checkpoint skipped on resume: {problem}")
        self.get_logger().info(
            (
                f"signing policies with key {signer.key_id} ({signer.source})"
                if signer is not None
                else "policies are published UNSIGNED (no signing_key): any workers trusting "
                "keys will refuse them"
            )
            + (
                f"; trajectories accepted only when signed by {self.trusted_workers.describe()}"
                if self.trusted_workers
                else "; unsigned trajectories accepted (no trusted_worker_keys)"
            )
        )
        self.get_logger().info(
            f"CGRPO-{config.variant} on {p['env_id']}: {n} policies, {config.num_groups} groups, "
            f"{p['iterations']} iterations x {p['steps_per_iteration']} steps, run dir {run_dir}"
            + (
                f" (resumed at iteration {self.session.iteration} from {self.session.resumed_from})"
                if p["resume"]
                else ""
            )
        )

    # -- callbacks (executor thread: validate, store, notify) ---------------------------------
    def on_trajectory(self, msg: UInt8MultiArray) -> None:
        try:
            traj = decode_trajectory(from_uint8_msg(msg))
        except WireFormatError as err:
            with self.lock:
                self._log_refusal("malformed", str(err), self.intake.refuse("malformed"))
            return
        if self.trusted_workers:
            try:  # before anything else: an unverified frame must not even count as seen
                self.trusted_workers.verify_frame(
                    traj.signed_bytes or b"",
                    traj.signature,
                    f"trajectory frame from {traj.worker_id[:64]!r} seq {traj.seq}",
                )
            except SignatureError as err:
                with self.lock:
                    self._log_refusal(err.reason, str(err), self.intake.refuse(err.reason))
                return
        with self.lock:
            refusal = self.intake.offer(traj, time.monotonic())
            if refusal is not None:
                reason, detail = refusal
                self._log_refusal(reason, detail, self.intake.rejected[reason])
                return
            self.lock.notify_all()

    def _log_refusal(self, reason: str, detail: str, count: int) -> None:
        now = time.monotonic()
        if now - self._reject_logged.get(reason, -1e9) >= REJECT_LOG_PERIOD_S:
            self._reject_logged[reason] = now
            # The detail may quote what the sender put in the frame: bounded (issue 19).
            self.get_logger().warning(
                f"rejected trajectory ({reason}, {count} so far): {bounded_text(detail)}"
            )

    def on_worker_status(self, msg: String) -> None:
        try:
            status = decode_metrics(msg.data)
            worker_id = str(status["worker_id"])[:256]
            ids = [int(i) for i in status.get("policy_ids", [])]
        except (WireFormatError, KeyError, TypeError, ValueError):
            return  # liveness only; a bad status is not worth a log line
        now = time.monotonic()
        with self.lock:
            self.intake.last_seen[worker_id] = now
            keys = ("versions", "steps_per_s", "steps_total", "collect_s_total")
            info = {k: status.get(k) for k in keys}
            self.workers[worker_id] = {**info, "policy_ids": ids}
            for i in ids:
                if 0 <= i < self.num_policies:
                    self.intake.policy_seen[i] = now

    def on_save_checkpoint(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        # Never wait here for a running update: answer at once and save after it.
        if self.session_lock.acquire(blocking=False):
            try:
                path = self.session.save_checkpoint()
            finally:
                self.session_lock.release()
            resp.success, resp.message = True, f"saved {path} (iteration {self.session.iteration})"
        else:
            self.save_requested = True
            resp.success, resp.message = True, "an update is running; saving right after it"
        return resp

    def on_stop(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        self.stop.set("the ~/stop service")
        with self.lock:
            self.lock.notify_all()
        resp.success, resp.message = True, "stopping; the final checkpoint follows"
        return resp

    def publish_status(self) -> None:
        now = time.monotonic()
        with self.lock:
            status = {
                "iteration": self.session.iteration,
                "iterations": self.shape.iterations,
                "waiting_for": self.intake.missing(),
                "stalled_policies": list(self.stalled),
                "rejected": dict(self.intake.rejected),
                "workers": {
                    w: {**self.workers.get(w, {}), "last_seen_s_ago": round(now - t, 2)}
                    for w, t in self.intake.last_seen.items()
                },
                "env_steps": self.session.env_steps,
                "done": self.done,
            }
        self.status_pub.publish(String(data=encode_metrics(status)))

    # -- main thread ----------------------------------------------------------------------------
    def publish_policies(self) -> None:
        version, n = self.session.iteration, self.num_policies
        for i in range(n):
            artifact, signature = self.session.signed_policy_artifact(i)
            frame = encode_policy(
                artifact, policy_id=i, policy_version=version, num_policies=n, signature=signature
            )
            self.policy_pub.publish(to_uint8_msg(frame))

    def wait_for_batches(self) -> list[DecodedTrajectory] | None:
        """One accepted batch per policy at the current version, or None when stopped."""
        started = time.monotonic()
        warned_at: dict[int, float] = {}
        with self.lock:
            for i in range(self.num_policies):
                self.intake.policy_seen.setdefault(i, started)
            while not self.stop:
                batches = self.intake.take_complete()
                if batches is not None:
                    self.stalled = []
                    return batches
                self.lock.wait(timeout=0.5)
                self._check_stalled(started, warned_at)
        return None

    def _check_stalled(self, started: float, warned_at: dict[int, float]) -> None:
        timeout = float(self.get_parameter("worker_timeout_s").value)
        now = time.monotonic()
        seen = self.intake.policy_seen
        self.stalled = [i for i in self.intake.missing() if now - max(seen[i], started) > timeout]
        for i in self.stalled:
            if now - warned_at.get(i, -1e9) > timeout:
                warned_at[i] = now
                self.get_logger().warning(
                    f"no batch or status for policy {i} (version {self.session.iteration}) "
                    f"for {now - max(seen[i], started):.0f} s "
                    f"(worker_timeout_s={timeout}); "
                    "is its rollout_worker running? Still waiting."
                )

    def train(self) -> dict[str, Any]:
        iterations = self.shape.iterations
        # The wait for batches counts from the first policy's export: a worker starts on
        # policy 0 while the learner still exports and sends the others.
        published = time.perf_counter()
        self.publish_policies()
        while self.session.iteration < iterations and not self.stop:
            trajectories = self.wait_for_batches()
            if trajectories is None:
                break
            with self.session_lock:
                self.session.checkpoint_every = int(self.get_parameter("checkpoint_every").value)
                metrics = self.session.update(
                    [t.batch for t in trajectories],
                    [t.episode_successes for t in trajectories],
                    wait_seconds=time.perf_counter() - published,
                )
                if self.save_requested:
                    self.save_requested = False
                    self.session.save_checkpoint()
            published = time.perf_counter()
            self.publish_policies()
            self.publish_metrics(metrics, trajectories)
        with self.session_lock, self.lock:
            extra = {
                "mode": "ros",
                "workers": len(self.intake.last_seen),
                "worker_ids": sorted(self.intake.last_seen),
                # Seconds each worker spent collecting (its last status): the benchmark's
                # split of the learner's wait into collection and DDS/worker overhead.
                "worker_collect_s": {
                    w: {
                        "collect_s": _number_or_none(info.get("collect_s_total")),
                        "steps": _number_or_none(info.get("steps_total")),
                        "policies": len(info.get("policy_ids", [])),
                    }
                    for w, info in self.workers.items()
                },
                "rejected": dict(self.intake.rejected),
                "stopped_by": self.stop.reason or None,
            }
        with self.session_lock:
            summary = self.session.finish(extra=extra)
        self.get_logger().info(
            f"finished at iteration {self.session.iteration}: {self.session.env_steps} steps, "
            f"run dir {self.session.run_dir}"
        )
        return summary

    def publish_metrics(
        self, metrics: IterationMetrics, trajectories: list[DecodedTrajectory]
    ) -> None:
        s = self.session
        returns = [p.mean_episode_return for p in metrics.policies]
        # This iteration's success rate per policy (null: no episode ended in its batch); null
        # as a whole when the task reports no success (locomotion).
        successes = s.last_success_rates
        message = {
            **dataclasses.asdict(metrics),
            "env_steps": s.env_steps,
            "wall_s": s.wall_s,
            "env_steps_per_s": s.env_steps / max(s.wall_s, 1e-9),
            "mean_return_per_policy": returns,
            "success_rate_per_policy": successes,
            "workers": [t.worker_id for t in trajectories],
        }
        self.metrics_pub.publish(String(data=encode_metrics(message)))
        shown = _join(returns, 1)
        rates = "" if successes is None else f", success [{_join(successes, 2)}]"
        self.get_logger().info(
            f"iteration {s.iteration}/{self.shape.iterations}: steps {s.env_steps}, "
            f"{s.env_steps / max(s.wall_s, 1e-9):.0f} steps/s, returns [{shown}]{rates}"
        )

    def announce_done(self) -> None:
        """Latch `done` so workers exit; linger until they left (or DONE_LINGER_S)."""
        with self.lock:
            self.done = True
        self.publish_status()
        deadline = time.monotonic() + DONE_LINGER_S
        while time.monotonic() < deadline and self.count_publishers(TRAJECTORIES_TOPIC) > 0:
            time.sleep(0.05)


def _number_or_none(value: Any) -> float | None:
    """A count or duration from a worker's status (untrusted JSON): finite and >= 0, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _join(values: list[float], digits: int) -> str:
    """Space-separated values for a log line; nan (no episode ended) as `nan`."""
    return " ".join("nan" if math.isnan(v) else f"{v:.{digits}f}" for v in values)


def _make_node(stop: StopFlag) -> LearnerNode:
    torch.set_num_threads(1)  # as `cgrpo train`: the workers need the other cores
    return LearnerNode(stop)


def _train(node: LearnerNode) -> None:
    node.train()
    node.announce_done()


def main(args: list[str] | None = None) -> None:
    notes = (
        "  cgrpo.<field>  (unset)\n      Any other CGRPOConfig field, e.g. cgrpo.learning_rate, "
        "cgrpo.hidden_sizes (cgrpo_ros/core/config.py; docs/training_stack.md)."
    )
    node_main(
        NODE_NAME, __doc__, LEARNER_PARAMS, args,
        make_node=_make_node, work=_train, help_notes=notes,
    )  # fmt: skip


if __name__ == "__main__":
    main()
