"""The robot's joint state merged by joint name from every /joint_states message (no ROS).

Issue 19: a normal robot has several publishers on /joint_states (the arm's driver at 100 Hz,
a gripper's at 30 Hz with its own 2 joints). Taking only the newest message made every
gripper message a tick without the arm's joints (a hold, and the blend restarted). Here each
message updates the joints it names, and each joint remembers when it was last heard: the
watchdog holds when any config joint is older than the timeout (per-joint freshness), so a
silent arm driver is still caught while the gripper keeps talking.

A message is taken whole or not at all. Refused (JointStateError, nothing taken): more than
`max_names` names, a name given twice (which copy would be the joint?), positions not one per
name, velocities neither empty nor one per name. An empty velocity array is valid
(sensor_msgs/JointState: "empty if not available"): those joints' velocities become unknown,
and a policy that observes velocities holds (`bad_observation`) until they are known again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cgrpo_ros.bounded import shown
from cgrpo_ros.deploy.observation import ObservationError

FloatArray = npt.NDArray[np.float64]
# Names in one /joint_states message, at most. Robots have tens of joints; a driver for a
# whole mobile manipulator a few hundred.
MAX_JOINT_STATE_NAMES = 1024


class JointStateError(ObservationError):
    """A /joint_states message refused whole; says what is wrong (untrusted parts bounded)."""


class MergedJointStates:
    """Position, velocity and arrival time of each config joint, from whichever message named
    it last. Arrays are in config order; a joint never heard has NaN and arrival -inf."""

    def __init__(self, joint_names: Sequence[str], max_names: int = MAX_JOINT_STATE_NAMES):
        self.joint_names = list(joint_names)
        self.max_names = max_names
        n = len(self.joint_names)
        self._config_index = {name: k for k, name in enumerate(self.joint_names)}
        self.positions = np.full(n, np.nan)
        self.velocities = np.full(n, np.nan)
        self.has_velocity = np.zeros(n, dtype=bool)
        self.received = np.full(n, -np.inf)  # time.monotonic() of the last message naming it
        self.stamp_ns = 0  # header stamp of the newest message that named a config joint
        # Where a message's config joints are, cached per list of names (drivers repeat theirs).
        self._names: list[str] | None = None
        self._source = np.empty(0, dtype=np.intp)  # message index of each taken joint
        self._target = np.empty(0, dtype=np.intp)  # its config index

    def update(
        self,
        names: Sequence[str],
        positions: Sequence[float],
        velocities: Sequence[float],
        stamp_ns: int,
        now: float,
    ) -> int:
        """Take the config joints of one message; returns how many it named (0: none of
        ours, e.g. a gripper's). Raises JointStateError, taking nothing, for a bad message."""
        count = len(names)
        if count > self.max_names:
            raise JointStateError(
                f"joint_states message with {count} names refused; allowed: at most "
                f"{self.max_names}"
            )
        if len(positions) != count:
            raise JointStateError(
                f"joint_states message refused: {count} names but {len(positions)} positions; "
                "allowed: one position per name"
            )
        if len(velocities) not in (0, count):
            raise JointStateError(
                f"joint_states message refused: {count} names but {len(velocities)} "
                "velocities; allowed: one per name, or none (empty: not available)"
            )
        if self._names is None or self._names != names:
            self._index(names)
        if self._source.size == 0:
            return 0
        source, target = self._source, self._target
        self.positions[target] = np.asarray(positions, dtype=np.float64)[source]
        if len(velocities):
            self.velocities[target] = np.asarray(velocities, dtype=np.float64)[source]
            self.has_velocity[target] = True
        else:
            self.velocities[target] = np.nan
            self.has_velocity[target] = False
        self.received[target] = now
        self.stamp_ns = stamp_ns
        return int(source.size)

    def _index(self, names: Sequence[str]) -> None:
        """Where the config joints are in `names`; JointStateError if a name repeats."""
        if len(set(names)) != len(names):
            repeated = sorted(name for name, copies in Counter(names).items() if copies > 1)
            raise JointStateError(
                f"joint_states message refused: joint name(s) {shown(repeated)} "
                "appear more than once; allowed: each name once"
            )
        pairs = [(k, self._config_index[n]) for k, n in enumerate(names) if n in self._config_index]
        self._source = np.array([k for k, _ in pairs], dtype=np.intp)
        self._target = np.array([j for _, j in pairs], dtype=np.intp)
        self._names = list(names)

    def missing(self) -> list[str]:
        """Config joints no message has named yet."""
        return [j for j, t in zip(self.joint_names, self.received, strict=True) if t == -np.inf]

    def oldest_age(self, now: float) -> float:
        """Seconds since the least recently heard config joint was heard (inf: never)."""
        return float(now - self.received.min())

    def stale_joints(self, now: float, timeout_s: float) -> list[str]:
        """Config joints not heard for more than `timeout_s` seconds."""
        old = now - self.received > timeout_s
        return [j for j, is_old in zip(self.joint_names, old, strict=True) if is_old]

    def without_velocity(self) -> list[str]:
        """Config joints whose latest message gave no velocity."""
        return [j for j, has in zip(self.joint_names, self.has_velocity, strict=True) if not has]
