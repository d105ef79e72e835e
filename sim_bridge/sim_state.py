"""Complete snapshots of a simulated task, for same-state groups (docs/algorithm.md).

A same-state group rolls out G continuations from one state of a trajectory. That needs the
whole state the next step depends on, not just qpos/qvel:

- the MuJoCo physics: the whole `MjData`, copied (`copy.copy` runs MuJoCo's mj_copyData).
  `mj_getState` with the `mjSTATE_INTEGRATION` spec (time, qpos, qvel, activations, ctrl,
  applied forces, mocap, warm start) is not enough: after `mj_step`, quantities such as body
  positions still hold their values from the start of the last substep, and Ant-v5 reads them
  for its reward before it steps, so a state set with `mj_setState` (+ `mj_forward`) gave a
  different first reward. A copy of the data steps bit for bit like the original on one
  machine. Restoring puts a fresh copy in place of the env's `data` (the Python bindings
  cannot copy into an existing MjData); nothing in these tasks keeps the old object except a
  renderer, and training does not render;
- what the gymnasium stack keeps in Python: every wrapper's episode step counter
  (`TimeLimit._elapsed_steps`), the env's `np_random` generator, a goal (`goal`, the
  gymnasium-robotics tasks) and whatever an env of this project declares itself through
  `snapshot_extra()` / `restore_extra()` (Arm7Reach: goal, step counter, rate limiter).

Only simulators can do this; a real arm cannot be put back, so the ROS robot backend refuses
the mode (cgrpo_ros/nodes/rollout_worker.py, check_groups_supported).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import numpy.typing as npt


class SnapshotError(ValueError):
    """The environment cannot be snapshotted (not a MuJoCo simulation we know how to copy)."""


@dataclass(frozen=True)
class EnvSnapshot:
    physics: Any  # mujoco.MjData, a copy of the task's data
    step_counters: tuple[tuple[int, int | None], ...]  # (wrapper depth, _elapsed_steps)
    rng_state: dict[str, Any] | None  # env.unwrapped.np_random's bit-generator state
    goal: npt.NDArray[np.float64] | None
    extra: Any  # the env's own snapshot_extra(), or None


def _physics(env: gym.Env[Any, Any]) -> tuple[Any, Any]:
    """The object holding `model` and `data`: a gymnasium MuJoCo or gymnasium-robotics task,
    or the ArmSim of Arm7Reach, and its MjModel."""
    unwrapped: Any = env.unwrapped
    for holder in (unwrapped, getattr(unwrapped, "sim", None)):
        model, data = getattr(holder, "model", None), getattr(holder, "data", None)
        if isinstance(model, mujoco.MjModel) and isinstance(data, mujoco.MjData):
            return holder, model
    raise SnapshotError(
        f"task {env.spec.id if env.spec else type(unwrapped).__name__!r} has no MuJoCo "
        "model/data to snapshot; same-state groups need a MuJoCo simulation "
        "(gymnasium MuJoCo tasks, gymnasium-robotics tasks, cgrpo_ros/Arm7Reach-v0)"
    )


def check_snapshot_support(env: gym.Env[Any, Any]) -> None:
    """Raise SnapshotError, naming the task, when `env` cannot be snapshotted."""
    _physics(env)


def _wrappers(env: gym.Env[Any, Any]) -> list[Any]:
    chain, current = [], env
    while True:
        chain.append(current)
        inner = getattr(current, "env", None)
        if inner is None or inner is current:
            return chain
        current = inner


def snapshot(env: gym.Env[Any, Any]) -> EnvSnapshot:
    """Everything the next step of `env` depends on (see the module docstring)."""
    holder, _ = _physics(env)
    physics = copy.copy(holder.data)
    counters = tuple(
        (depth, wrapper._elapsed_steps)
        for depth, wrapper in enumerate(_wrappers(env))
        if hasattr(wrapper, "_elapsed_steps")
    )
    unwrapped: Any = env.unwrapped
    rng = getattr(unwrapped, "_np_random", None)
    goal = getattr(unwrapped, "goal", None)
    take_extra = getattr(unwrapped, "snapshot_extra", None)
    return EnvSnapshot(
        physics=physics,
        step_counters=counters,
        rng_state=copy.deepcopy(rng.bit_generator.state) if rng is not None else None,
        goal=np.array(goal, dtype=np.float64) if goal is not None else None,
        extra=take_extra() if take_extra is not None else None,
    )


def restore(env: gym.Env[Any, Any], snap: EnvSnapshot) -> None:
    """Put `env` back into the state `snap` was taken in (the same env object)."""
    holder, model = _physics(env)
    if snap.physics.model is not model:
        raise SnapshotError("the snapshot was taken of another task's simulation")
    holder.data = copy.copy(snap.physics)  # a fresh copy: one snapshot serves G branches
    chain = _wrappers(env)
    for depth, steps in snap.step_counters:
        chain[depth]._elapsed_steps = steps
    unwrapped: Any = env.unwrapped
    if snap.rng_state is not None:
        unwrapped.np_random.bit_generator.state = copy.deepcopy(snap.rng_state)
    if snap.goal is not None:
        unwrapped.goal = snap.goal.copy()
    if snap.extra is not None:
        unwrapped.restore_extra(snap.extra)


class MujocoSnapshotter:
    """`snapshot` / `restore` above, as the EnvSnapshotter that GroupRolloutCollector takes."""

    def snapshot(self, env: gym.Env[Any, Any]) -> EnvSnapshot:
        return snapshot(env)

    def restore(self, env: gym.Env[Any, Any], snap: EnvSnapshot) -> None:
        restore(env, snap)
