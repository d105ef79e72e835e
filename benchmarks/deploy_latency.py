"""policy_server at 500 Hz over loopback DDS: jitter, observation-to-command latency, CPU.

    .venv/bin/python benchmarks/deploy_latency.py --duration 60 --out runs/bench/deploy_latency.json

Three processes on one isolated DDS domain: a publisher of /joint_states at --rate stamped
with wall time, the policy_server (control_rate_hz = --rate, publish_trajectory on, whose
header.stamp is the stamp of the joint state each command was computed from), and this
script, which records when each command arrives. Latency = arrival wall time - stamp.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test"), str(ROOT / "test" / "integration")]


def publisher(rate: float, duration: float) -> None:
    """Separate process: JointState at `rate` Hz, stamp = wall time at publish."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import JointState

    from sim_bridge.robot_config import load_robot_config

    robot = load_robot_config()
    try:
        with rclpy.init():
            node = rclpy.create_node("bench_joint_states")
            pub = node.create_publisher(JointState, "/joint_states", 10)
            msg = JointState(name=list(robot.joint_names))
            msg.position, msg.velocity = list(robot.home), [0.0] * robot.num_joints

            def tick() -> None:
                ns = time.time_ns()
                msg.header.stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
                pub.publish(msg)

            node.create_timer(1.0 / rate, tick)
            end = time.monotonic() + duration
            while rclpy.ok() and time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_onnxruntime(model: Path, n: int = 20000) -> dict[str, float]:
    from cgrpo_ros.core.policy_artifact import OnnxPolicy

    policy = OnnxPolicy.from_file(model)
    obs = np.zeros((1, policy.metadata.obs_dim), np.float32)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        policy.session.run(["action_mean"], {"obs": obs})
        times.append(time.perf_counter() - t)
    p50, p99 = np.percentile(times, [50, 99]) * 1e3
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--model", type=Path, default=None, help="default: a constant policy")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--role", default="bench", choices=["bench", "publisher"])
    args = parser.parse_args()
    if args.role == "publisher":
        publisher(args.rate, args.duration + 30)
        return 0

    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions
    from ros_helpers import isolated_ros_env, process_output, start_node_process, stop_process
    from std_msgs.msg import String
    from std_srvs.srv import SetBool
    from trajectory_msgs.msg import JointTrajectory

    env = isolated_ros_env()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    model = args.model
    if model is None:
        from policy_fixtures import (  # type: ignore[import-not-found]
            reach_task_spec,
            write_constant_policy,
        )

        # A policy that holds still (rest action) on the reach task; its folder is removed
        # at exit (tempfile's finalizer).
        scratch = tempfile.TemporaryDirectory(prefix="cgrpo_deploy_latency_")
        task = reach_task_spec()
        assert task.rest_action is not None
        model = write_constant_policy(Path(scratch.name) / "constant.onnx", task.rest_action, task)
    server = start_node_process(
        "cgrpo_ros.nodes.policy_server",
        env,
        ros_args=[
            *("-p", f"model_path:={model}", "-p", f"control_rate_hz:={args.rate}"),
            *("-p", "publish_trajectory:=true", "-p", "trajectory_topic:=/bench/trajectory"),
            *("-p", "goal:=[0.45, 0.0, 0.4]", "-p", "status_rate_hz:=1.0"),
            *("-p", "blend_time_s:=0.0"),
        ],
    )
    pub = subprocess.Popen(
        [sys.executable, __file__, "--role", "publisher", "--rate", str(args.rate),
         "--duration", str(args.duration)],
        env=env,
    )  # fmt: skip
    context = Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]),
               signal_handler_options=SignalHandlerOptions.NO)  # fmt: skip
    node = rclpy.create_node("bench_probe", context=context)
    latencies: list[float] = []
    statuses: list[dict[str, object]] = []
    recording = [False]

    def on_command(msg: JointTrajectory) -> None:
        if recording[0]:
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            latencies.append((time.time_ns() - stamp) / 1e6)

    node.create_subscription(JointTrajectory, "/bench/trajectory", on_command, 100)
    node.create_subscription(String, "/policy_server/status",
                             lambda m: statuses.append(json.loads(m.data)), 10)  # fmt: skip

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)

    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        client = node.create_client(SetBool, "/policy_server/enable")
        end = time.monotonic() + 60
        while not (statuses and statuses[-1].get("started")) and time.monotonic() < end:
            spin(0.1)
        client.wait_for_service(timeout_sec=30)
        future = client.call_async(SetBool.Request(data=True))
        while not future.done():
            spin(0.05)
        spin(2.0)  # warm-up, then reset the node's windows by reading deltas
        recording[0] = True
        cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
        spin(args.duration)
        cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - wall0)
        recording[0] = False
        spin(1.5)
        status = statuses[-1]
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        stop_process(pub)
        stop_process(server)
    lat = np.asarray(latencies)
    result = {
        "rate_hz": args.rate,
        "duration_s": args.duration,
        "commands_received": int(lat.size),
        "obs_to_command_ms": {
            k: round(float(np.percentile(lat, q)), 4) for k, q in (("p50", 50), ("p99", 99))
        },
        "control_jitter_ms": status["control_jitter_ms"],
        "control_period_ms": status["control_period_ms"],
        "tick_compute_ms": status["tick_compute_ms"],
        "inference_in_server_ms": status["inference_ms"],
        "bare_onnxruntime_ms": bare_onnxruntime(model),
        "server_cpu_share_of_one_core": round(cpu, 3),
        "holds": status["holds"],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    if not lat.size:
        print(process_output(server), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
