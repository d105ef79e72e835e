"""Wire format benchmark: a HalfCheetah-sized trajectory batch over real DDS between 2 processes.

    .venv/bin/python benchmarks/wire_bench.py [--steps 2048] [--iterations 200] [--domain-id 77]

The script (the "learner" side) spawns an echo process (the "worker" side). Each iteration
encodes a batch, publishes it on /bench/trajectories; the echo process receives it, decodes it
and answers `seq` on /bench/acks. Round trip = encode + publish + DDS + receive + decode + ack.
Both processes use an isolated ROS_DOMAIN_ID with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.testing.batches import synthetic_batch
from cgrpo_ros.wire.frame import from_uint8_msg, to_uint8_msg
from cgrpo_ros.wire.trajectory import decode_trajectory, encode_trajectory

OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah-v5


def percentiles(samples_s: list[float]) -> str:
    ms = np.array(samples_s) * 1e3
    return f"p50 {np.percentile(ms, 50):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms"


def echo_main() -> None:
    """The spawned process: decode every batch and acknowledge its seq."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from std_msgs.msg import String, UInt8MultiArray

    rclpy.init()
    node = rclpy.create_node("wire_bench_echo")
    acks = node.create_publisher(String, "/bench/acks", 10)

    def on_batch(msg: UInt8MultiArray) -> None:
        decoded = decode_trajectory(from_uint8_msg(msg))
        acks.publish(String(data=str(decoded.seq)))

    node.create_subscription(UInt8MultiArray, "/bench/trajectories", on_batch, 10)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # SIGTERM from the benchmark: rclpy's signal handler shuts the context down
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def bench_codec(batch: RolloutBatch, iterations: int) -> None:
    meta = {"policy_id": 0, "policy_version": 1, "worker_id": "w0", "task": "HalfCheetah-v5"}
    encode, decode, to_msg, from_msg = [], [], [], []
    for seq in range(iterations):
        t0 = time.perf_counter()
        data = encode_trajectory(batch, seq=seq, **meta)
        t1 = time.perf_counter()
        decode_trajectory(data)
        t2 = time.perf_counter()
        msg = to_uint8_msg(data)
        t3 = time.perf_counter()
        from_uint8_msg(msg)
        t4 = time.perf_counter()
        encode.append(t1 - t0)
        decode.append(t2 - t1)
        to_msg.append(t3 - t2)
        from_msg.append(t4 - t3)
    print(f"frame size: {len(data)} bytes ({batch.num_steps} steps)")
    print(f"encode_trajectory: {percentiles(encode)}")
    print(f"decode_trajectory: {percentiles(decode)}")
    print(f"to_uint8_msg:      {percentiles(to_msg)}")
    print(f"from_uint8_msg:    {percentiles(from_msg)}")


def bench_dds(batch: RolloutBatch, iterations: int, env: dict[str, str]) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String, UInt8MultiArray

    echo = subprocess.Popen(
        [sys.executable, __file__, "--echo"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        rclpy.init()
        node = rclpy.create_node("wire_bench")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        publisher = node.create_publisher(UInt8MultiArray, "/bench/trajectories", 10)
        received: list[int] = []
        node.create_subscription(String, "/bench/acks", lambda m: received.append(int(m.data)), 10)
        meta = {"policy_id": 0, "policy_version": 1, "worker_id": "w0", "task": "HalfCheetah-v5"}

        def round_trip(seq: int, timeout: float) -> float | None:
            t0 = time.perf_counter()
            publisher.publish(to_uint8_msg(encode_trajectory(batch, seq=seq, **meta)))
            while seq not in received and time.perf_counter() - t0 < timeout:
                executor.spin_once(timeout_sec=0.001)
            return time.perf_counter() - t0 if seq in received else None

        # Discovery: repeat until the first batch is acknowledged.
        deadline, seq = time.monotonic() + 20.0, 0
        while round_trip(seq, 0.5) is None:
            seq += 1
            if time.monotonic() > deadline:
                raise RuntimeError("the echo process never answered (DDS discovery failed)")
        samples = [
            rtt for i in range(iterations) if (rtt := round_trip(seq + 1 + i, 2.0)) is not None
        ]
        print(f"DDS round trip ({len(samples)}/{iterations} acknowledged): {percentiles(samples)}")
        node.destroy_node()
        rclpy.try_shutdown()
    finally:
        echo.terminate()  # always tear down the spawned process
        try:
            echo.wait(timeout=5)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("BENCH_DOMAIN", 77)))
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        echo_main()
        return
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.update(ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"], ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    batch = synthetic_batch(args.steps, OBS_DIM, ACT_DIM)
    bench_codec(batch, args.iterations)
    bench_dds(batch, args.iterations, env)


if __name__ == "__main__":
    main()
