"""Which trajectory batches the learner takes: the acceptance rules, ROS-free.

One batch per policy at the version the learner waits for, from the task and run shape it
trains, each (worker, seq) once. Everything else is refused with a reason the learner counts
and reports (`rejected` in its status and summary.json; docs/reliability.md). The learner
node calls this under its lock; nothing here touches ROS, so the rules are tested directly.
"""

from __future__ import annotations

from collections import Counter

from cgrpo_ros.bounded import DuplicateGuard, RecentTable
from cgrpo_ros.tasks import TaskSpec
from cgrpo_ros.wire.trajectory import DecodedTrajectory

Refusal = tuple[str, str]  # (reason, detail)


class BatchIntake:
    """The batches of the version under way, and why others were refused."""

    def __init__(
        self,
        *,
        task: TaskSpec,
        num_policies: int,
        steps_per_iteration: int,
        group_size: int,
        version: int,
    ) -> None:
        self.task = task
        self.num_policies = num_policies
        self.steps_per_iteration = steps_per_iteration
        self.group_size = group_size
        # The version whose batches are accepted; moves on as soon as the last batch of an
        # iteration is in, so a late batch arriving during the update counts as stale.
        self.waiting_version = version
        self.pending: dict[int, DecodedTrajectory] = {}
        self.rejected: Counter[str] = Counter()
        # Keyed by what senders claim: bounded, so a flood of invented ids cannot grow memory.
        self.seen = DuplicateGuard()
        self.last_seen: RecentTable[float] = RecentTable()  # worker id -> last message time
        self.policy_seen: dict[int, float] = {}  # policy id -> last batch or status naming it

    def offer(self, traj: DecodedTrajectory, now: float) -> Refusal | None:
        """Take `traj` into this version's batches, or say why not (and count it)."""
        refusal = self._check(traj, now)
        if refusal is not None:
            self.rejected[refusal[0]] += 1
            return refusal
        self.pending[traj.policy_id] = traj
        return None

    def refuse(self, reason: str) -> int:
        """Count a refusal decided before `offer` (malformed, bad signature); the new count."""
        self.rejected[reason] += 1
        return self.rejected[reason]

    def _check(self, traj: DecodedTrajectory, now: float) -> Refusal | None:
        if not self.seen.check_and_remember(traj.worker_id, traj.seq):
            return "duplicate", f"worker {traj.worker_id!r} sent seq {traj.seq} twice"
        self.last_seen[traj.worker_id] = now
        if not 0 <= traj.policy_id < self.num_policies:
            return "unknown_policy", (
                f"policy_id {traj.policy_id} from {traj.worker_id!r}; "
                f"allowed 0..{self.num_policies - 1}"
            )
        self.policy_seen[traj.policy_id] = now
        b, task = traj.batch, self.task
        if traj.task != task.env_id:
            return (
                "wrong_task",
                f"task {traj.task!r} from {traj.worker_id!r}; training {task.env_id!r}",
            )
        got = (b.num_steps, b.obs.shape[1], b.actions.shape[1])
        want = (self.steps_per_iteration, task.obs_dim, task.act_dim)
        if got != want:
            return (
                "wrong_size",
                f"(steps, obs_dim, act_dim) = {got} from {traj.worker_id!r}; want {want}",
            )
        grouped = self.group_size > 0
        if (b.branch_group is not None) != grouped:
            return "wrong_rollout_mode", (
                f"a {'same-state group' if b.branch_group is not None else 'plain'} batch from "
                f"{traj.worker_id!r}; this run trains with "
                f"{'same-state groups' if grouped else 'plain rollouts'} (group_size = "
                f"{self.group_size})"
            )
        version = self.waiting_version
        if traj.policy_version != version:
            kind = "stale" if traj.policy_version < version else "future_version"
            return kind, (
                f"policy {traj.policy_id} version {traj.policy_version} from {traj.worker_id!r}; "
                f"waiting for version {version}"
            )
        if traj.policy_id in self.pending:
            return "surplus", f"a second batch of policy {traj.policy_id} version {version}"
        return None

    def missing(self) -> list[int]:
        """The policies whose batch of this version has not arrived."""
        return [i for i in range(self.num_policies) if i not in self.pending]

    def take_complete(self) -> list[DecodedTrajectory] | None:
        """Every policy's batch, in policy order, once all are in; the next version is then
        the one accepted. None while some are missing."""
        if len(self.pending) < self.num_policies:
            return None
        batches = [self.pending[i] for i in range(self.num_policies)]
        self.pending.clear()
        self.waiting_version += 1
        return batches
