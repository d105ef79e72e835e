"""A hostile publisher: oversized messages on /joint_states (or ~/goal) from its own process.

    python test/joint_state_flood.py --kind joints_100k --rate 50 --seconds 3

Kinds (issue 19): `joints_100k` (100,000 joints, ~3 MB), `joints_10k` (~300 kB),
`name_1mb` (one name of 1 MB), `goal_1mb` (125,000 goal values on /policy_server/goal).
The message is built and serialised once and its bytes published in a loop (`--rate 0`: no
pause at all). Prints how many messages it published. Runs until `--seconds` pass or
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

KINDS = ("joints_100k", "joints_10k", "name_1mb", "goal_1mb")


def hostile_message(kind: str) -> tuple[type, str, Any]:
    """(message type, topic, message) of one kind."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    if kind in ("joints_100k", "joints_10k"):
        n = 100_000 if kind == "joints_100k" else 10_000
        msg = JointState(name=[f"joint{i}" for i in range(n)])
        msg.position, msg.velocity = [0.0] * n, [0.0] * n
        return JointState, "/joint_states", msg
    if kind == "name_1mb":
        return JointState, "/joint_states", JointState(name=["a" * 1_000_000], position=[0.0])
        return JointState, "/joint_states", msg
    if kind == "goal_1mb":
        return Float64MultiArray, "/policy_server/goal", Float64MultiArray(data=[0.5] * 125_000)
    raise ValueError(f"--kind {kind!r}; allowed: {', '.join(KINDS)}")


def flood(kind: str, rate: float, seconds: float) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.serialization import serialize_message
    from rclpy.signals import SignalHandlerOptions

    stop = [False]
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.__setitem__(0, True))
    sent = 0
    try:
        with rclpy.init(signal_handler_options=SignalHandlerOptions.NO):
            node = rclpy.create_node("hostile_flood")
            msg_type, topic, msg = hostile_message(kind)
            data = serialize_message(msg)
            # Depth 10: a keep-last writer replaces a sample whose fragments are still under
            # way, and a megabyte message needs a while to arrive whole.
            pub = node.create_publisher(msg_type, topic, 10)
            # Flood only once the target listens (discovery takes a while on a busy machine).
            ready = time.monotonic() + 20.0
            while pub.get_subscription_count() == 0 and time.monotonic() < ready:
                time.sleep(0.05)
            end = time.monotonic() + seconds
            while rclpy.ok() and time.monotonic() < end and not stop[0]:
                pub.publish(data)  # the serialised bytes: no per-message conversion
                sent += 1
                if rate > 0:
                    time.sleep(1.0 / rate)
            node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(f"published {flood(args.kind, args.rate, args.seconds)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
