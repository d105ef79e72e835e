"""A simulated robot driver: /joint_states at a fixed rate from its own process.

    python -m cgrpo_ros.testing.joint_state_publisher --rate 500 --seconds 60

Publishes on absolute deadlines (like a driver's control loop, unlike an rclpy timer spun by
a Python executor), each message stamped with the wall clock just before it is published, at
the robot config's home pose. Used by benchmarks/deploy_latency.py and by the policy server's
test under CPU load. Runs until `--seconds` pass or SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def publish_joint_states(
    rate: float, seconds: float, realtime_priority: int = 0, cpus: list[int] | None = None
) -> None:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import JointState

    from cgrpo_ros.deploy.realtime import apply_realtime
    from cgrpo_ros.robot.config import load_robot_config

    robot = load_robot_config()
    period = 1.0 / rate
    stop = [False]
    # Our handlers, not rclpy's: the loop ends, then the node and context go down in order
    # (rclpy's would shut the context while a publish is under way).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.__setitem__(0, True))
    try:
        with rclpy.init(signal_handler_options=SignalHandlerOptions.NO):
            node = rclpy.create_node("fake_robot_joint_states")
            pub = node.create_publisher(JointState, "/joint_states", 10)
            # A robot driver's loop runs real-time (ros2_control's does): the same option as
            # the policy server's realtime_priority / cpu_affinity.
            apply_realtime(realtime_priority, cpus or [])
            msg = JointState(name=list(robot.joint_names))
            msg.position, msg.velocity = list(robot.home), [0.0] * robot.num_joints
            stamp = msg.header.stamp
            deadline = time.monotonic()
            end = deadline + seconds
            while rclpy.ok() and deadline < end and not stop[0]:
                deadline += period
                delay = deadline - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:  # fell behind (machine busy): a new grid from now, never a burst
                    deadline = time.monotonic()
                stamp.sec, stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
                pub.publish(msg)
            node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--realtime-priority", type=int, default=0, help="SCHED_FIFO; 0: off")
    parser.add_argument("--cpus", type=int, nargs="*", default=[], help="CPU affinity")
    args = parser.parse_args()
    publish_joint_states(args.rate, args.seconds, args.realtime_priority, args.cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
