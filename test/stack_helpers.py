"""What the training-stack tests share: node command lines on the stack's parameter file,
a test-side probe of the stack's topics, a hand-made trajectory batch, and the figures
benchmarks/reliability_report.py collects. Imported by the tests (test/ is on sys.path through
test/conftest.py); the benchmarks use cgrpo_ros.testing instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String, UInt8MultiArray

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.nodes.topics import LEARNER_STATUS_TOPIC, POLICIES_TOPIC, WORKER_STATUS_TOPIC
from cgrpo_ros.testing.ros_processes import REPO_ROOT, probe_node, wait_for
from cgrpo_ros.testing.ros_processes import node_argv as shared_node_argv
from cgrpo_ros.wire.frame import WireFormatError, from_uint8_msg
from cgrpo_ros.wire.policy import decode_policy

PROBE_WAIT_S = 45.0  # process start (torch, MuJoCo, onnxruntime) + discovery on a loaded machine
PROBE_RUN_TIMEOUT_S = 100.0


ENV_ID = "InvertedPendulum-v5"  # obs 4, act 1: the cheapest MuJoCo task

PARAMS_FILE = REPO_ROOT / "config" / "train_sim.yaml"

FAST = {"cgrpo.epochs": 1, "cgrpo.kmeans_n_init": 1}  # the loop is under test, not learning


def node_argv(module: str, name: str, params: dict[str, Any]) -> list[str]:
    """As `cgrpo train-sim` does: the shared parameter file, then node-specific overrides."""
    return shared_node_argv(PARAMS_FILE, module, name, params)


def learner_argv(run_dir: Path, **params: Any) -> list[str]:
    base = {"env_id": ENV_ID, "num_policies": 2, "num_groups": 2, "iterations": 2,
            "steps_per_iteration": 128, "run_dir": str(run_dir), **FAST}  # fmt: skip
    return node_argv("cgrpo_ros.nodes.learner", "learner", {**base, **params})


def worker_argv(name: str, policy_ids: list[int], **params: Any) -> list[str]:
    base = {"env_id": ENV_ID, "num_policies": 2, "steps_per_iteration": 128}
    base.update(policy_ids=policy_ids, **params)
    return node_argv("cgrpo_ros.nodes.rollout_worker", name, base)


def make_batch(steps: int, obs_dim: int = 4, act_dim: int = 1) -> RolloutBatch:
    rng = np.random.default_rng(0)
    dones = np.zeros(steps, bool)
    dones[steps // 2 - 1] = dones[-1] = True
    return RolloutBatch(
        obs=rng.standard_normal((steps, obs_dim)).astype(np.float32),
        actions=rng.standard_normal((steps, act_dim)).astype(np.float32),
        rewards=np.ones(steps, np.float32),
        dones=dones,
        terminated=np.zeros(steps, bool),
        episode_returns=np.array([steps / 2, steps / 2]),
        episode_lengths=np.array([steps // 2, steps // 2]),
    )


FIGURES = os.environ.get("CGRPO_RELIABILITY_FIGURES")  # JSON-lines file for the report script


def record_figure(fault: str, **values: Any) -> None:
    """Append one measurement for benchmarks/reliability_report.py (no-op unless it asked)."""
    if FIGURES:
        with open(FIGURES, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"fault": fault, **values}) + "\n")


@dataclass
class Probe:
    """A test-side DDS participant recording the stack's status topics and policy frames."""

    node: Node
    executor: SingleThreadedExecutor
    learner_status: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    worker_status: list[dict[str, Any]] = field(default_factory=list)
    policies: list[tuple[int, int, bytes]] = field(default_factory=list)  # id, version, onnx

    def spin(self, timeout: float) -> None:
        self.executor.spin_once(timeout_sec=timeout)

    def status(self) -> dict[str, Any]:
        return self.learner_status[-1][1] if self.learner_status else {}

    def wait_status(self, condition: Any, timeout: float = PROBE_WAIT_S) -> bool:
        return wait_for(lambda: condition(self.status()), timeout, self.spin)

    def wait_policy_version(self, version: int, timeout: float = PROBE_WAIT_S) -> bool:
        return wait_for(lambda: any(v >= version for _, v, _ in self.policies), timeout, self.spin)

    def wait_exit(
        self, proc: subprocess.Popen[bytes], timeout: float = PROBE_RUN_TIMEOUT_S
    ) -> bool:
        return wait_for(lambda: proc.poll() is not None, timeout, self.spin)


def latched(depth: int) -> QoSProfile:
    return QoSProfile(
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


@contextmanager
def open_probe(env: dict[str, str], name: str = "fault_probe") -> Iterator[Probe]:
    """A probe node in its own rclpy context on `env`'s domain; always shut down."""
    with probe_node(env, name) as (node, executor):
        p = Probe(node=node, executor=executor)

        def on_learner_status(msg: String) -> None:
            p.learner_status.append((time.monotonic(), json.loads(msg.data)))

        def on_policy(msg: UInt8MultiArray) -> None:
            try:
                frame = decode_policy(from_uint8_msg(msg))
            except WireFormatError:
                return  # a hostile-input test's own frames
            p.policies.append((frame.policy_id, frame.policy_version, frame.onnx_bytes))

        node.create_subscription(String, LEARNER_STATUS_TOPIC, on_learner_status, latched(1))
        node.create_subscription(
            String, WORKER_STATUS_TOPIC, lambda m: p.worker_status.append(json.loads(m.data)), 50
        )
        node.create_subscription(UInt8MultiArray, POLICIES_TOPIC, on_policy, latched(8))
        yield p
