"""The learner's acceptance rules (cgrpo_ros/nodes/batch_intake.py), one refusal at a time.

The integration tests send the same refusals over DDS to a running learner
(test_hostile_input.py, test_training_stack.py); here each rule is checked on its own.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.nodes.batch_intake import BatchIntake
from cgrpo_ros.tasks import TaskSpec
from cgrpo_ros.testing.batches import synthetic_batch
from cgrpo_ros.wire.trajectory import DecodedTrajectory

TASK = TaskSpec(
    env_id="InvertedPendulum-v5",
    obs_names=[f"obs/{i}" for i in range(4)],
    action_names=["act/0"],
    action_low=[-3.0],
    action_high=[3.0],
)
STEPS = 64


def intake(version: int = 3, group_size: int = 0) -> BatchIntake:
    return BatchIntake(
        task=TASK, num_policies=2, steps_per_iteration=STEPS, group_size=group_size,
        version=version,
    )  # fmt: skip


def traj(
    policy_id: int = 0, version: int = 3, seq: int = 0, **changes: object
) -> DecodedTrajectory:
    batch: RolloutBatch = synthetic_batch(STEPS, 4, 1, episode_steps=32)
    base = DecodedTrajectory(
        policy_id=policy_id, policy_version=version, worker_id="w0", seq=seq,
        task=TASK.env_id, batch=batch,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_one_batch_per_policy_completes_the_version_and_moves_it_on() -> None:
    box = intake()
    assert box.offer(traj(0, seq=0), now=1.0) is None
    assert box.missing() == [1] and box.take_complete() is None
    assert box.offer(traj(1, seq=1), now=2.0) is None
    batches = box.take_complete()
    assert batches is not None and [t.policy_id for t in batches] == [0, 1]
    assert box.waiting_version == 4 and box.missing() == [0, 1]
    assert box.last_seen["w0"] == 2.0 and box.policy_seen == {0: 1.0, 1: 2.0}
    assert not box.rejected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"policy_id": 2}, "unknown_policy"),
        ({"task": "Hopper-v5"}, "wrong_task"),
        ({"batch": synthetic_batch(STEPS + 1, 4, 1)}, "wrong_size"),
        ({"batch": synthetic_batch(STEPS, 5, 1)}, "wrong_size"),
        ({"policy_version": 2}, "stale"),
        ({"policy_version": 4}, "future_version"),
    ],
)
def test_each_rule_refuses_with_its_reason(change: dict[str, object], reason: str) -> None:
    box = intake()
    refusal = box.offer(traj(**change), now=1.0)  # type: ignore[arg-type]
    assert refusal is not None and refusal[0] == reason, refusal
    assert box.rejected == {reason: 1} and box.missing() == [0, 1]


def test_duplicates_and_surplus_batches_are_refused() -> None:
    box = intake()
    assert box.offer(traj(0, seq=5), now=1.0) is None
    refusal = box.offer(traj(0, seq=5), now=1.1)
    assert refusal is not None and refusal[0] == "duplicate"
    refusal = box.offer(traj(0, seq=6), now=1.2)
    assert refusal is not None and refusal[0] == "surplus"
    assert box.rejected == {"duplicate": 1, "surplus": 1}


def test_rollout_mode_must_match_the_run() -> None:
    plain = traj()
    refusal = intake(group_size=4).offer(plain, now=1.0)
    assert refusal is not None and refusal[0] == "wrong_rollout_mode"
    grouped = dataclasses.replace(
        plain, batch=plain.batch._replace(branch_group=np.zeros(STEPS, np.int64))
    )
    refusal = intake().offer(grouped, now=1.0)
    assert refusal is not None and refusal[0] == "wrong_rollout_mode"
    assert intake(group_size=4).offer(grouped, now=1.0) is None


def test_refusals_decided_before_the_intake_are_counted() -> None:
    box = intake()
    assert box.refuse("malformed") == 1 and box.refuse("malformed") == 2
    assert box.rejected == {"malformed": 2}
