"""policy_server latency at 500 Hz and 1 kHz, event and timer modes (issues 4 and 15).

    .venv/bin/python benchmarks/deploy_latency.py --seconds 60 --out docs/deploy_latency.json

For each (control mode, executor, rate), three processes on one isolated DDS domain:
- a simulated robot publishing /joint_states at the rate from its own loop (absolute
  deadlines, like a driver's control loop), stamped with the wall clock just before publish
  (cgrpo_ros/testing/joint_state_publisher.py);
- the policy_server (`control_rate_hz` = the rate, `publish_trajectory` on: the trajectory's
  `header.stamp` is the stamp of the joint state the command was computed from);
- this script's probe, which records for every command the stamp, the DDS source timestamp
  (when the server published it), the DDS reception timestamp (when the sample reached the
  probe's reader) and the time its callback ran.

Figures (JSON keys in parentheses):
- observation-to-command latency (`p50_obs_to_cmd_ms`, `p99_obs_to_cmd_ms`): reception at the
  probe's DDS reader minus the joint state's stamp; `..._callback_ms` adds the probe's own
  Python executor wake-up, a cost of the measurement and not of the server.
- control-period jitter (`p99_jitter_ms`): |interval between consecutive commands' source
  timestamps - period|, over the whole window.
- missed ticks (`missed_tick_fraction`): commands whose interval is over 1.5 periods count
  round(interval / period) - 1 missing ticks; over all ticks the window should have had.
- `cpu_fraction`: the server process's CPU time / wall time (1.0 = one core).
- `load_average`: os.getloadavg() at the start and the end of the window: the machine is
  shared, so the figures are upper bounds when it is high.
- `stages_ms`: where a tick's time goes, from the server's own timestamps (`tick_stages_ms`
  in ~/status, its last 10,000 ticks) and the DDS timestamps above; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT),) if p not in sys.path]
WARM_UP_S = 2.0
STARTUP_TIMEOUT_S = 90.0


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


def percentiles_ms(values_ns: np.ndarray) -> dict[str, float]:
    if values_ns.size == 0:
        return {}
    p50, p99 = np.percentile(values_ns, [50, 99]) / 1e6
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4)}


def measure(
    model: Path,
    mode: str,
    executor_kind: str,
    rate: float,
    seconds: float,
    realtime_priority: int = 0,
    server_cpus: list[int] | None = None,
    robot_cpus: list[int] | None = None,
) -> dict[str, Any]:
    """One server configuration: start the three processes, record, stop them.

    `realtime_priority` > 0: the robot, the server and this probe (the controller's side)
    all run SCHED_FIFO at that priority (deploy/realtime.py); `server_cpus`/`robot_cpus` pin
    the server and the robot."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import String
    from std_srvs.srv import SetBool
    from trajectory_msgs.msg import JointTrajectory

    from cgrpo_ros.testing.ros_processes import (
        isolated_ros_env,
        process_output,
        start_node_process,
        stop_process,
    )

    env = isolated_ros_env()
    period_ns = 1e9 / rate
    server = start_node_process(
        "cgrpo_ros.nodes.policy_server",
        env,
        ros_args=[
            *("-p", f"model_path:={model}", "-p", f"control_rate_hz:={rate}"),
            *("-p", f"control_mode:={mode}", "-p", f"executor:={executor_kind}"),
            *("-p", "publish_trajectory:=true", "-p", "trajectory_topic:=/bench/trajectory"),
            *("-p", "goal:=[0.45, 0.0, 0.4]", "-p", "status_rate_hz:=1.0"),
            *("-p", "blend_time_s:=0.0"),
            *("-p", f"realtime_priority:={realtime_priority}"),
            *(("-p", f"cpu_affinity:={list(server_cpus)}") if server_cpus else ()),
        ],
    )
    pub = subprocess.Popen(
        [sys.executable, "-m", "cgrpo_ros.testing.joint_state_publisher", "--rate", str(rate),
         "--seconds", str(seconds + STARTUP_TIMEOUT_S),
         "--realtime-priority", str(realtime_priority), "--cpus", *map(str, robot_cpus or [])],
        env=env,
    )  # fmt: skip
    context = Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]),
               signal_handler_options=SignalHandlerOptions.NO)  # fmt: skip
    node = rclpy.create_node("bench_probe", context=context)
    if realtime_priority:
        from cgrpo_ros.deploy.realtime import apply_realtime

        apply_realtime(realtime_priority)
    capacity = int(seconds * rate * 1.2) + 1000
    rows = np.zeros((capacity, 4), np.int64)  # stamp, source, received, callback (ns)
    count = [0]
    recording = [False]
    statuses: list[dict[str, Any]] = []

    def on_command(msg: JointTrajectory, info: Any) -> None:
        if recording[0] and count[0] < capacity:
            stamp = msg.header.stamp
            rows[count[0]] = (
                stamp.sec * 1_000_000_000 + stamp.nanosec,
                info["source_timestamp"],
                info["received_timestamp"],
                time.time_ns(),
            )
            count[0] += 1

    node.create_subscription(JointTrajectory, "/bench/trajectory", on_command, 1000)
    node.create_subscription(
        String, "/policy_server/status", lambda m: statuses.append(json.loads(m.data)), 10
    )
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)

    try:
        client = node.create_client(SetBool, "/policy_server/enable")
        end = time.monotonic() + STARTUP_TIMEOUT_S
        while not (statuses and statuses[-1].get("started")) and time.monotonic() < end:
            spin(0.1)
            if server.poll() is not None:
                raise RuntimeError(f"policy_server exited:\n{process_output(server)}")
        if not client.wait_for_service(timeout_sec=30):
            raise RuntimeError(f"no ~/enable service:\n{process_output(server)}")
        future = client.call_async(SetBool.Request(data=True))
        while not future.done():
            spin(0.05)
        spin(WARM_UP_S)
        before = statuses[-1]
        load_start = os.getloadavg()
        recording[0] = True
        cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
        spin(seconds)
        cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - wall0)
        recording[0] = False
        load_end = os.getloadavg()
        n_status = len(statuses)
        end = time.monotonic() + 5.0
        while len(statuses) == n_status and time.monotonic() < end:
            spin(0.1)  # one status from after the window (1 Hz)
        after = statuses[-1]
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        stop_process(pub)
        server_code = stop_process(server)
    r = rows[: count[0]]
    stamp, source, received, callback = r.T
    intervals = np.diff(source).astype(np.float64)
    jitter = np.abs(intervals - period_ns)
    gaps = np.rint(intervals / period_ns)
    missed = int(np.sum(np.where(intervals > 1.5 * period_ns, gaps - 1, 0)))
    latency = received - stamp
    server_ticks = after["control_period_ms"]["count"] - before["control_period_ms"]["count"]
    server_missed = after["missed_ticks"] - before["missed_ticks"]
    result: dict[str, Any] = {
        "control_mode": mode,
        "executor": executor_kind,
        "rate_hz": rate,
        "realtime_priority": realtime_priority,
        "server_cpus": server_cpus or [],
        "robot_cpus": robot_cpus or [],
        "seconds": seconds,
        "commands_received": int(r.shape[0]),
        "expected_ticks": round(seconds * rate),
        "p50_obs_to_cmd_ms": percentiles_ms(latency).get("p50"),
        "p99_obs_to_cmd_ms": percentiles_ms(latency).get("p99"),
        "max_obs_to_cmd_ms": round(float(latency.max()) / 1e6, 4) if latency.size else None,
        "p50_obs_to_cmd_callback_ms": percentiles_ms(callback - stamp).get("p50"),
        "p99_obs_to_cmd_callback_ms": percentiles_ms(callback - stamp).get("p99"),
        "p50_jitter_ms": percentiles_ms(jitter).get("p50"),
        "p99_jitter_ms": percentiles_ms(jitter).get("p99"),
        "max_jitter_ms": round(float(jitter.max()) / 1e6, 4) if jitter.size else None,
        "missed_tick_fraction": round(missed / max(1, r.shape[0] + missed), 6),
        "missed_ticks": missed,
        "server_missed_ticks": server_missed,
        "server_ticks": server_ticks,
        "cpu_fraction": round(cpu, 3),
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in load_end],
        },
        "stages_ms": {
            "dds_command_delivery": percentiles_ms(received - source),
            "stamp_to_command_publish": percentiles_ms(source - stamp),
            "probe_wake_up": percentiles_ms(callback - received),
            **{
                k: {q: v[q] for q in ("p50", "p99") if q in v}
                for k, v in after["tick_stages_ms"].items()
            },
        },
        "server_holds": after["holds"],
        "fallback_ticks": after["fallback_ticks"] - before["fallback_ticks"],
        "rate_capped_joint_states": after["rate_capped_joint_states"]
        - before["rate_capped_joint_states"],
        "server_exit_code": server_code,
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[500.0, 1000.0])
    parser.add_argument("--modes", nargs="+", default=["event", "timer"])
    parser.add_argument(
        "--executors",
        nargs="+",
        default=["events"],
        help="executors to run every mode and rate with (events, single_threaded)",
    )
    parser.add_argument(
        "--compare-executors",
        action="store_true",
        help="also run event mode at the first rate with the other executor",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="recording window per run")
    parser.add_argument(
        "--realtime-priority",
        type=int,
        default=0,
        help="SCHED_FIFO priority of robot, server and probe (0: normal scheduling)",
    )
    parser.add_argument("--server-cpus", type=int, nargs="*", default=[], help="pin the server")
    parser.add_argument("--robot-cpus", type=int, nargs="*", default=[], help="pin the robot")
    parser.add_argument("--model", type=Path, default=None, help="default: a constant policy")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    model = args.model
    if model is None:
        from cgrpo_ros.testing.policies import (
            reach_task_spec,
            write_constant_policy,
        )

        # A policy that holds still (rest action) on the reach task; its folder is removed
        # at exit (tempfile's finalizer).
        scratch = tempfile.TemporaryDirectory(prefix="cgrpo_deploy_latency_")
        task = reach_task_spec()
        assert task.rest_action is not None
        model = write_constant_policy(Path(scratch.name) / "constant.onnx", task.rest_action, task)
    configs = [(m, e, r) for e in args.executors for m in args.modes for r in args.rates]
    if args.compare_executors:
        for other in ("events", "single_threaded"):
            if other not in args.executors:
                configs.append(("event", other, args.rates[0]))
    runs = []
    for mode, executor_kind, rate in configs:
        print(f"measuring {mode} mode, {executor_kind} executor, {rate:g} Hz, "
              f"{args.seconds:g} s ...", file=sys.stderr, flush=True)  # fmt: skip
        run = measure(
            model, mode, executor_kind, rate, args.seconds,
            args.realtime_priority, args.server_cpus, args.robot_cpus,
        )  # fmt: skip
        print(json.dumps(run), file=sys.stderr, flush=True)
        runs.append(run)
    main_executor = args.executors[0]
    by_mode: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["executor"] == main_executor:
            by_mode.setdefault(run["control_mode"], {})[f"{run['rate_hz']:g}"] = run
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "executor": main_executor,
        "bare_onnxruntime_ms": bare_onnxruntime(model),
        "modes": by_mode,
        "runs": runs,
    }
    print(json.dumps(by_mode, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if all(r["commands_received"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
