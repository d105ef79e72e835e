"""The `rollout_worker` node: runs some of the N policies and publishes their trajectories.

Topics (QoS in docs/training_stack.md):
    subscribes  /cgrpo/policies        std_msgs/UInt8MultiArray  policy frames (latched)
    subscribes  /cgrpo/learner_status  std_msgs/String           JSON; `done` ends the worker
    publishes   /cgrpo/trajectories    std_msgs/UInt8MultiArray  trajectory frames
    publishes   /cgrpo/worker_status   std_msgs/String           JSON, about once a second

Collection runs in the main thread and the node spins in a background thread (rclpy#1313):
callbacks only store the newest policy frame under a lock.

A backend's `collect(policy_id, version, act, steps)` returns `(batch, episode_successes)`
(the success flag of each episode that ended in the batch, in the order of its
`episode_returns`; None when the task reports no success), or None when stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from functools import partial
from typing import Any, TypeAlias

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_msgs.msg import String, UInt8MultiArray

from cgrpo_ros.bounded import bounded_text
from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.policy_artifact import MAX_MODEL_BYTES, OnnxPolicy, PolicyArtifactError
from cgrpo_ros.core.rollout import (
    ActFn,
    GroupRolloutCollector,
    GroupSettings,
    RolloutCollector,
    collector_seed,
    sampling_rng,
)
from cgrpo_ros.core.run_shape import WORKER_SHAPE_FIELDS
from cgrpo_ros.core.signing import SignatureError, check_claims, check_not_replayed
from cgrpo_ros.nodes.params import (
    ParameterError,
    ParamSpec,
    StopFlag,
    declare_parameters,
    latched_qos,
    load_signing_key,
    load_trusted_keys,
    node_main,
    shape_parameters,
)
from cgrpo_ros.nodes.topics import (
    LEARNER_STATUS_TOPIC,
    POLICIES_TOPIC,
    TRAJECTORIES_TOPIC,
    WORKER_STATUS_TOPIC,
)
from cgrpo_ros.wire.frame import WireFormatError, from_uint8_msg, to_uint8_msg
from cgrpo_ros.wire.metrics import decode_metrics
from cgrpo_ros.wire.policy import DecodedPolicy, decode_policy
from cgrpo_ros.wire.trajectory import encode_trajectory

NODE_NAME = "rollout_worker"
STATUS_PERIOD_S = 1.0
WARN_THROTTLE_S = 5.0

WORKER_PARAMS = (
    ParamSpec("worker_id", "", "Name in trajectory frames and status; empty: the node name."),
    ParamSpec("policy_ids", [0], "Which of the N policies this worker runs (int array)."),
    *shape_parameters(WORKER_SHAPE_FIELDS),  # N, T and seed, as the learner's (run_shape.py)
    ParamSpec("env_id", "HalfCheetah-v5", "Task id (gymnasium id; the task name for ros_robot)."),
    ParamSpec("backend", "gymnasium", "Where steps come from.", choices=("gymnasium", "ros_robot")),
    ParamSpec("robot_config", "", "ros_robot: robot YAML; empty: the shipped arm7.yaml."),
    ParamSpec("control_rate_hz", 0.0, "ros_robot: command rate [Hz]; 0: the robot's.", (0.0, 1e4)),
    ParamSpec(
        "reset_service", "/sim_bridge/reset", "ros_robot: std_srvs/Trigger between episodes."
    ),
    ParamSpec("joint_states_topic", "/joint_states", "ros_robot: sensor_msgs/JointState topic."),
    ParamSpec("lockstep", False, "ros_robot: wait for a newer joint state after each command."),
    ParamSpec(
        "state_timeout_s", 5.0, "ros_robot: warn when no state arrives this long.", (0.1, 600.0)
    ),
    ParamSpec(
        "trusted_keys",
        Parameter.Type.STRING_ARRAY,
        "Public key files of the learner; set: only policy frames signed by one of them, and "
        "newer than the one in use, are run. Unset: unsigned frames are run (docs/security.md).",
    ),
    ParamSpec(
        "signing_key",
        "",
        "Ed25519 private key file (mode 0600) signing this worker's trajectory frames; empty: "
        "unsigned.",
    ),
)
DECLARED_PARAMETERS = tuple(spec.name for spec in WORKER_PARAMS)

# What a backend's `collect` returns: the batch and the success flag of each of its episodes
# (None: the task reports no success), as RolloutCollector.episode_successes.
Collected: TypeAlias = tuple[RolloutBatch, list[bool] | None]


class GymBackend:
    """In-process MuJoCo task: one RolloutCollector (own env) per policy, as `cgrpo train`."""

    def __init__(self, env_id: str, seed: int, num_policies: int) -> None:
        self.env_id, self.seed, self.num_policies = env_id, seed, num_policies
        self.collectors: dict[int, RolloutCollector | GroupRolloutCollector] = {}
        # Seconds inside the rollouts themselves (not the first call's env creation and
        # imports): the throughput benchmark's "collection" (docs/benchmarks.md).
        self.collect_s_total = 0.0

    def _collector(
        self, policy_id: int, version: int, groups: GroupSettings | None
    ) -> RolloutCollector | GroupRolloutCollector:
        from cgrpo_ros.session import make_collector

        if policy_id not in self.collectors:
            env_seed = collector_seed(self.seed, policy_id, version, self.num_policies)
            self.collectors[policy_id] = make_collector(self.env_id, groups, env_seed)
        return self.collectors[policy_id]

    def collect(self, policy_id: int, version: int, act: ActFn, steps: int) -> Collected:
        collector = self._collector(policy_id, version, None)
        assert isinstance(collector, RolloutCollector)
        started = time.perf_counter()
        batch = collector.collect(act, steps)
        self.collect_s_total += time.perf_counter() - started
        return batch, collector.episode_successes

    def collect_groups(
        self, policy_id: int, version: int, runner: OnnxPolicy, groups: GroupSettings, steps: int
    ) -> Collected:
        """Same-state groups (the learner's policy metadata asks for them): the simulator's
        state is saved and restored, which only an in-process simulation allows."""
        collector = self._collector(policy_id, version, groups)
        assert isinstance(collector, GroupRolloutCollector)
        started = time.perf_counter()
        batch = collector.collect(runner.action_mean, runner.log_std, steps)
        self.collect_s_total += time.perf_counter() - started
        return batch, collector.episode_successes

    def close(self) -> None:
        for collector in self.collectors.values():
            collector.env.close()


class RolloutWorkerNode(Node):
    """Keeps the newest policy frames and publishes batches; the main thread collects."""

    def __init__(self, stop: StopFlag, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.stop = stop
        p = declare_parameters(self, WORKER_PARAMS)
        self.params = p
        self.worker_id = p["worker_id"] or self.get_name()
        self.policy_ids = [int(i) for i in p["policy_ids"]]
        n = p["num_policies"]
        if not self.policy_ids or any(not 0 <= i < n for i in self.policy_ids):
            raise ParameterError(
                f"parameter 'policy_ids' = {self.policy_ids} is not allowed; use a non-empty "
                f"list of ids in [0, {n - 1}] (num_policies = {n})"
            )
        self.trusted = load_trusted_keys("trusted_keys", p["trusted_keys"])
        self.signer = load_signing_key("signing_key", p["signing_key"])
        self.signed_at: dict[int, int] = {}  # policy id -> signing time of the frame in use
        self.lock = threading.Condition()
        # policy id -> (version, validated runner, serial of the frame that brought it)
        self.newest: dict[int, tuple[int, OnnxPolicy, int]] = {}
        self._frame_serial = 0
        self.acting: dict[int, int] = {}  # policy id -> version in use
        self.learner_done = False
        self.final_version: int | None = None
        self.seq = time.time_ns() // 1_000_000  # ms clock: a restarted worker never reuses one
        self.steps_total = 0
        self.collect_s_total: float | None = None  # the backend's, when it measures it
        self.rejected: Counter[str] = Counter()  # bad policy frames by reason
        self._status_window = (time.monotonic(), 0)
        latched = latched_qos(2 * n)  # room for every policy's newest frame, twice
        reliable = QoSProfile(depth=max(4, 2 * len(self.policy_ids)))
        status_qos = latched_qos(1)
        self.create_subscription(UInt8MultiArray, POLICIES_TOPIC, self.on_policy, latched)
        self.create_subscription(String, LEARNER_STATUS_TOPIC, self.on_learner_status, status_qos)
        self.trajectory_pub = self.create_publisher(UInt8MultiArray, TRAJECTORIES_TOPIC, reliable)
        self.status_pub = self.create_publisher(String, WORKER_STATUS_TOPIC, 10)
        self.create_timer(STATUS_PERIOD_S, self.on_status_tick)
        self.get_logger().info(
            f"worker {self.worker_id}: policies {self.policy_ids} of {n}, backend "
            f"{p['backend']}, task {p['env_id']}, {p['steps_per_iteration']} steps/iteration; "
            + (
                f"runs only policies signed by {self.trusted.describe()}"
                if self.trusted
                else "runs UNSIGNED policies (no trusted_keys)"
            )
            + (f"; signs trajectories with key {self.signer.key_id}" if self.signer else "")
        )

    # -- callbacks (executor thread: copy and notify only) -----------------------------------
    def on_policy(self, msg: UInt8MultiArray) -> None:
        try:
            policy = decode_policy(from_uint8_msg(msg))
        except WireFormatError as err:
            self._reject("malformed", str(err))
            return
        if policy.num_policies != self.params["num_policies"]:
            self._reject(
                "wrong_num_policies",
                f"frame for {policy.num_policies} policies; this run has "
                f"{self.params['num_policies']}",
            )
            return
        if policy.policy_id not in self.policy_ids:
            return  # another worker's policy: normal traffic, not an error
        # The ONNX payload is checked here, once per frame (a few ms, once per iteration), so
        # a frame with a valid envelope but a payload that is not a runnable policy is refused
        # and the last good version stays in use, instead of failing the collection loop.
        source = f"policy {policy.policy_id} version {policy.policy_version}"
        if len(policy.onnx_bytes) > MAX_MODEL_BYTES:
            self._reject("oversized", f"{source}: {len(policy.onnx_bytes)} bytes")
            return
        verified = None
        if self.trusted:
            # Signature first: an unverified model is never even parsed by onnxruntime.
            try:
                verified = self.trusted.verify_policy(policy.onnx_bytes, policy.signature, source)
                check_claims(verified, _header_claims(policy), source)
                with self.lock:
                    check_not_replayed(verified, self.signed_at.get(policy.policy_id), source)
            except SignatureError as err:
                self._reject(err.reason, str(err))
                return
        try:
            runner = OnnxPolicy(policy.onnx_bytes, source=source)
        except PolicyArtifactError as err:
            self._reject("bad_model", str(err))
            return
        meta = runner.metadata
        if verified is not None:
            try:  # what the model itself says must be what was signed
                check_claims(verified, meta.signed_claims(), source)
            except SignatureError as err:
                self._reject(err.reason, str(err))
                return
        try:
            GroupSettings.from_metadata(meta.extra)
        except ValueError as err:
            self._reject("bad_model", f"{source}: {err}")
            return
        if (meta.policy_id, meta.policy_version) != (policy.policy_id, policy.policy_version):
            self._reject(
                "mismatch",
                f"{source}: the model's metadata says policy {meta.policy_id} "
                f"version {meta.policy_version}",
            )
            return
        with self.lock:
            # The newest frame received wins, even at an equal or lower version: that is a
            # restarted learner resuming from a checkpoint, and the batches the old one never
            # used must be collected again (docs/reliability.md). Each frame gets a serial so
            # the collection loop sees it as new work.
            if verified is not None:
                # A frame validated concurrently cannot exist (one executor thread), but the
                # check is cheap: never go back to an older signature.
                if verified.signed_at_ns <= self.signed_at.get(policy.policy_id, -1):
                    return
                self.signed_at[policy.policy_id] = verified.signed_at_ns
            self._frame_serial += 1
            self.newest[policy.policy_id] = (policy.policy_version, runner, self._frame_serial)
            self.lock.notify_all()

    def _reject(self, reason: str, detail: str) -> None:
        with self.lock:
            self.rejected[reason] += 1
            count = self.rejected[reason]
        # The detail may quote what the sender put in the frame: bounded (issue 19).
        self.get_logger().warning(
            f"rejected policy frame ({reason}, {count} so far): {bounded_text(detail)}",
            throttle_duration_sec=WARN_THROTTLE_S,
        )

    def on_learner_status(self, msg: String) -> None:
        try:
            status = decode_metrics(msg.data)
        except WireFormatError:
            return
        with self.lock:
            if isinstance(status.get("iterations"), int):
                # The policy published after the last update is final: nothing to collect.
                self.final_version = status["iterations"]
            if status.get("done") is True:
                self.learner_done = True
                self.lock.notify_all()

    def on_status_tick(self) -> None:
        now = time.monotonic()
        with self.lock:
            start, steps_then = self._status_window
            self._status_window = (now, self.steps_total)
            status = {
                "worker_id": self.worker_id,
                "backend": self.params["backend"],
                "policy_ids": self.policy_ids,
                "versions": {str(i): self.acting.get(i) for i in self.policy_ids},
                "newest_versions": {str(i): v[0] for i, v in self.newest.items()},
                "steps_total": self.steps_total,
                "collect_s_total": (
                    None if self.collect_s_total is None else round(self.collect_s_total, 3)
                ),
                "steps_per_s": round((self.steps_total - steps_then) / max(now - start, 1e-9), 1),
                "rejected_policy_frames": sum(self.rejected.values()),
                "rejected": dict(self.rejected),
            }
        self.status_pub.publish(String(data=json.dumps(status)))

    # -- main thread ----------------------------------------------------------------------------
    def next_work(self, collected: dict[int, int], timeout: float) -> list[int]:
        """Policy ids with a frame newer than the last one collected (waits up to timeout).

        `collected` maps policy id -> serial of the frame last collected with.
        """
        with self.lock:
            self.lock.wait_for(lambda: self.learner_done or self._ready(collected), timeout=timeout)
            return [] if self.learner_done else self._ready(collected)

    def _ready(self, collected: dict[int, int]) -> list[int]:
        last = self.final_version
        return [
            i
            for i, (v, _, serial) in self.newest.items()
            if serial > collected.get(i, 0) and (last is None or v < last)
        ]

    def publish_batch(
        self,
        batch: RolloutBatch,
        policy_id: int,
        version: int,
        episode_successes: list[bool] | None = None,
        collect_s_total: float | None = None,
    ) -> None:
        """Send one batch; `collect_s_total`: the backend's rollout seconds so far, counted
        in the status together with the batch's steps."""
        frame = encode_trajectory(
            batch,
            policy_id=policy_id,
            policy_version=version,
            worker_id=self.worker_id,
            seq=self.seq,
            task=self.params["env_id"],
            episode_successes=episode_successes,
            sign=None if self.signer is None else self.signer.sign_frame,
        )
        self.seq += 1
        self.trajectory_pub.publish(to_uint8_msg(frame))
        with self.lock:
            self.steps_total += batch.num_steps
            self.collect_s_total = collect_s_total


def collection_loop(node: RolloutWorkerNode, backend: Any) -> None:
    """For every policy, collect T steps with its newest version and publish the batch."""
    p = node.params
    steps = p["steps_per_iteration"]
    rngs: dict[int, np.random.Generator] = {}
    collected: dict[int, int] = {}  # policy id -> serial of the frame collected with
    while not node.stop:
        for policy_id in node.next_work(collected, timeout=0.5):
            if node.stop:
                return
            with node.lock:
                version, runner, serial = node.newest[policy_id]
                node.acting[policy_id] = version
            check_task(runner, p["env_id"])
            groups = GroupSettings.from_metadata(runner.metadata.extra)  # checked in on_policy
            rng = rngs.setdefault(policy_id, sampling_rng(p["seed"], policy_id, version))
            if groups is not None:
                check_groups_supported(backend, p["backend"], groups)
                collected_batch = backend.collect_groups(policy_id, version, runner, groups, steps)
            else:
                collected_batch = backend.collect(
                    policy_id, version, partial(runner.sample, rng=rng), steps
                )
            if collected_batch is None:  # stopped mid-batch (ros_robot)
                return
            batch, successes = collected_batch
            node.publish_batch(
                batch, policy_id, version, successes, getattr(backend, "collect_s_total", None)
            )
            collected[policy_id] = serial
        with node.lock:
            if node.learner_done:
                node.stop.set("the learner announced it is done")


def _header_claims(policy: DecodedPolicy) -> dict[str, int]:
    """The frame header's fields a signature covers (the envelope names them too)."""
    return {"policy_id": policy.policy_id, "policy_version": policy.policy_version}


def check_task(runner: OnnxPolicy, env_id: str) -> None:
    """A worker started for another task than the learner's is a set-up error: exit 2."""
    if runner.metadata.task != env_id:
        raise ParameterError(
            f"parameter 'env_id' = {env_id!r}, but the learner trains task "
            f"{runner.metadata.task!r}; start both with the same env_id"
        )


def check_groups_supported(backend: Any, backend_name: str, groups: GroupSettings) -> None:
    """Same-state groups restore a saved simulator state; a robot cannot be put back: exit 2."""
    if not isinstance(backend, GymBackend):
        raise ParameterError(
            f"the learner asks for same-state groups (cgrpo.rollout_group_size = "
            f"{groups.group_size}), which restore a saved simulator state; parameter 'backend' "
            f"= {backend_name!r} drives a robot (real, or the sim_bridge as one), which cannot "
            "be put back into a past state. Train with group_size 0, or use backend 'gymnasium'"
        )


def make_backend(node: RolloutWorkerNode) -> Any:
    p = node.params
    if p["backend"] == "gymnasium":
        return GymBackend(p["env_id"], p["seed"], p["num_policies"])
    from cgrpo_ros.nodes.robot_backend import RobotBackend

    return RobotBackend(node, node.stop)


def _collect(node: RolloutWorkerNode) -> None:
    backend = make_backend(node)
    try:
        collection_loop(node, backend)
        node.get_logger().info(f"stopping: {node.stop.reason or 'done'}")
        node.on_status_tick()  # a last status with the final counters
    finally:
        backend.close()


def main(args: list[str] | None = None) -> None:
    node_main(NODE_NAME, __doc__, WORKER_PARAMS, args, make_node=RolloutWorkerNode, work=_collect)


if __name__ == "__main__":
    main()
