"""What signing costs (issue 18): Ed25519 on a HalfCheetah policy frame and trajectory frame.

    .venv/bin/python benchmarks/signing_cost.py [--repeats 200] [--policies 2] [--steps 2048]

Times, on one core, each step signing adds to an iteration of CGRPO on HalfCheetah-v5 (the
default config's network, 2 policies x 2048 steps):
  learner   sign a policy artifact (envelope) and frame it, per policy and iteration
  worker    decode + verify the envelope + compare the claims, per policy and iteration
  worker    sign a trajectory frame (the Ed25519 part of encode_trajectory), per batch
  learner   verify a trajectory frame, per batch
and, for scale, one CGRPO update on batches of the same size (a lower bound of an iteration:
collection comes on top) and onnxruntime building the worker's session for a new policy.
Prints a markdown table (docs/benchmarks.md) and the share of an iteration.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgrpo_ros.core.cgrpo import CGRPO
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.onnx_export import export_policy_onnx
from cgrpo_ros.core.policy_artifact import OnnxPolicy
from cgrpo_ros.core.signing import SigningKey, TrustedKeys, check_claims
from cgrpo_ros.tasks import TaskSpec
from cgrpo_ros.testing.batches import synthetic_batch
from cgrpo_ros.wire.policy import decode_policy, encode_policy
from cgrpo_ros.wire.trajectory import decode_trajectory, encode_trajectory

ENV_ID = "HalfCheetah-v5"


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and p99 of `repeats` calls [s] (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), float(np.percentile(samples, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--policies", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the learner
    task = TaskSpec.from_env(ENV_ID)
    config = CGRPOConfig.for_variant("full", num_policies=args.policies, num_groups=2, seed=0)
    algo = CGRPO(config, task.obs_dim, task.act_dim, task.rest_action)
    meta = task.policy_metadata(0, 7, config_hash=config.config_hash())
    onnx = export_policy_onnx(algo.policies[0], meta)
    key = SigningKey.generate()
    trusted = TrustedKeys([key.public_key])
    claims = meta.signed_claims()
    n = args.policies

    def learner_sign_policy() -> bytes:
        envelope = key.sign_policy(onnx, claims)
        return encode_policy(
            onnx, policy_id=0, policy_version=7, num_policies=n, signature=envelope
        )

    frame = learner_sign_policy()
    unsigned_frame = encode_policy(onnx, policy_id=0, policy_version=7, num_policies=n)

    def worker_verify_policy() -> None:
        policy = decode_policy(frame)
        verified = trusted.verify_policy(policy.onnx_bytes, policy.signature, "policy")
        check_claims(verified, {"policy_id": 0, "policy_version": 7}, "policy")
        check_claims(verified, claims, "policy")  # after onnxruntime, in the node

    batch = synthetic_batch(args.steps, task.obs_dim, task.act_dim, 0)
    plain = encode_trajectory(batch, policy_id=0, policy_version=7, worker_id="w", seq=1,
                                   task=ENV_ID)  # fmt: skip
    signed = encode_trajectory(batch, policy_id=0, policy_version=7, worker_id="w", seq=1,
                                    task=ENV_ID, sign=key.sign_frame)  # fmt: skip
    decoded = decode_trajectory(signed)

    rows = {
        "learner: sign policy + encode_policy": timed(learner_sign_policy, args.repeats),
        "learner: encode_policy unsigned (for scale)": timed(
            lambda: encode_policy(onnx, policy_id=0, policy_version=7, num_policies=n),
            args.repeats,
        ),
        "worker: decode_policy + verify + claims": timed(worker_verify_policy, args.repeats),
        "worker: decode_policy unsigned (for scale)": timed(
            lambda: decode_policy(unsigned_frame), args.repeats
        ),
        "worker: sign trajectory frame": timed(lambda: key.sign_frame(plain), args.repeats),
        "learner: verify trajectory frame": timed(
            lambda: trusted.verify_frame(decoded.signed_bytes or b"", decoded.signature, "t"),
            args.repeats,
        ),
        "worker: onnxruntime session for a new policy (for scale)": timed(
            lambda: OnnxPolicy(onnx), max(10, args.repeats // 10)
        ),
    }
    batches = [synthetic_batch(args.steps, task.obs_dim, task.act_dim, i) for i in range(n)]
    started = time.perf_counter()
    algo.update(batches)
    update_s = time.perf_counter() - started

    per_iteration = n * sum(
        rows[name][0]
        for name in (
            "learner: sign policy + encode_policy",
            "worker: decode_policy + verify + claims",
            "worker: sign trajectory frame",
            "learner: verify trajectory frame",
        )
    ) - n * (rows["learner: encode_policy unsigned (for scale)"][0]
             + rows["worker: decode_policy unsigned (for scale)"][0])  # fmt: skip
    print(f"HalfCheetah-v5: policy artifact {len(onnx)} bytes, policy frame {len(frame)} bytes "
          f"(signature section {len(frame) - len(unsigned_frame)} bytes), trajectory frame "
          f"{len(signed)} bytes ({len(signed) - len(plain)} of signature); {args.repeats} "
          f"repeats, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("\n| step | median | p99 |\n|---|---|---|")
    for name, (median, p99) in rows.items():
        print(f"| {name} | {median * 1e3:.3f} ms | {p99 * 1e3:.3f} ms |")
    print(
        f"\nsigning cost per iteration ({n} policies: sign + verify of each policy frame and "
        f"trajectory frame, net of the unsigned codec): {per_iteration * 1e3:.2f} ms\n"
        f"one CGRPO update on {n} x {args.steps} steps: {update_s:.3f} s -> "
        f"{100 * per_iteration / update_s:.3f} % of the update alone (an iteration also "
        "collects, so the share of an iteration is smaller)"
    )


if __name__ == "__main__":
    main()
