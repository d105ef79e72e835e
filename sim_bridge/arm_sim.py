"""MuJoCo simulation of the arm7 robot behind a position-command interface.

`ArmSim` is what a ros2_control position interface looks like from the outside: a joint
position command in, joint positions / velocities / efforts out. It checks at construction
that the MJCF and the robot config agree on joint names, order and limits, so a model edited
without its config (or the reverse) fails at start-up rather than during deployment.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import numpy.typing as npt

from cgrpo_ros.robot.config import RobotConfig
from cgrpo_ros.robot.kinematics import EE_SITE, load_model

FloatArray = npt.NDArray[np.float64]

GOAL_BODY = "goal"


class ArmSim:
    """The simulated arm: position commands in, joint states and fingertip position out."""

    def __init__(self, robot: RobotConfig, model_path: str | Path | None = None) -> None:
        self.robot = robot
        self.model = load_model(robot, model_path)
        self.data = mujoco.MjData(self.model)
        # Separate scratch data for forward_kinematics: computing FK of arbitrary q must not
        # disturb the simulated state.
        self._fk_data = mujoco.MjData(self.model)
        joint_ids = [
            mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in robot.joint_names
        ]
        self._qpos_idx = np.array([self.model.jnt_qposadr[j] for j in joint_ids], dtype=np.int64)
        self._dof_idx = np.array([self.model.jnt_dofadr[j] for j in joint_ids], dtype=np.int64)
        self._act_idx = np.array(
            [
                mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, n)
                for n in robot.joint_names
            ],
            dtype=np.int64,
        )
        self._ee_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        goal_body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, GOAL_BODY)
        self._goal_mocap = int(self.model.body_mocapid[goal_body]) if goal_body >= 0 else -1
        self._lower = robot.lower
        self._upper = robot.upper
        self.reset()

    @property
    def time(self) -> float:
        """Simulated time [s] since construction (not reset by `reset`)."""
        return float(self.data.time)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def reset(self, q: npt.ArrayLike | None = None) -> None:
        """Put the arm at rest at `q` (default: home), commanding it to stay there."""
        q_arr = self._validated(self.robot.home if q is None else q, "reset pose")
        # Keep the clock running across resets: ROS stamps derived from it must be monotonic.
        t = self.data.time
        mocap = self.data.mocap_pos.copy()
        mujoco.mj_resetData(self.model, self.data)
        self.data.time = t
        self.data.mocap_pos[:] = mocap
        self.data.qpos[self._qpos_idx] = np.clip(q_arr, self._lower, self._upper)
        self.data.ctrl[self._act_idx] = self.data.qpos[self._qpos_idx]
        mujoco.mj_forward(self.model, self.data)

    def set_position_command(self, q_cmd: npt.ArrayLike) -> FloatArray:
        """Command joint positions [rad]; clipped to the joint limits. Returns what was applied.

        Raises ValueError for a wrong size or a non-finite value: a bad command is never
        applied, not even partially.
        """
        q = np.clip(self._validated(q_cmd, "position command"), self._lower, self._upper)
        self.data.ctrl[self._act_idx] = q
        return q

    def step(self, n_substeps: int = 1) -> None:
        """Advance the physics by `n_substeps` timesteps."""
        if n_substeps < 0:
            raise ValueError(f"n_substeps = {n_substeps}: expected >= 0")
        if n_substeps:
            mujoco.mj_step(self.model, self.data, nstep=n_substeps)
            # mj_step leaves positions of bodies/sites at the state *before* the last
            # integration; refresh them so ee_position() matches joint_positions().
            mujoco.mj_kinematics(self.model, self.data)

    def advance(self, dt: float) -> int:
        """Advance by `dt` seconds, rounded to whole timesteps. Returns the steps taken."""
        if not np.isfinite(dt) or dt < 0:
            raise ValueError(f"dt = {dt}: expected a finite duration >= 0 s")
        n = round(dt / self.timestep)
        self.step(n)
        return n

    def joint_positions(self) -> FloatArray:
        return np.array(self.data.qpos[self._qpos_idx], dtype=np.float64)

    def joint_velocities(self) -> FloatArray:
        return np.array(self.data.qvel[self._dof_idx], dtype=np.float64)

    def joint_efforts(self) -> FloatArray:
        """Actuator torque [Nm] per joint (what a driver reports as effort)."""
        return np.array(self.data.qfrc_actuator[self._dof_idx], dtype=np.float64)

    def position_command(self) -> FloatArray:
        return np.array(self.data.ctrl[self._act_idx], dtype=np.float64)

    def ee_position(self) -> FloatArray:
        """Fingertip (site ee_site) position [m], world frame, of the simulated state."""
        return np.array(self.data.site_xpos[self._ee_site], dtype=np.float64)

    def set_goal_marker(self, xyz: npt.ArrayLike) -> None:
        """Move the visual-only goal marker (no effect on the physics)."""
        p = np.asarray(xyz, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"goal marker = {p!r}: expected 3 finite numbers (x, y, z) [m]")
        if self._goal_mocap >= 0:
            self.data.mocap_pos[self._goal_mocap] = p

    def forward_kinematics(self, q: npt.ArrayLike) -> FloatArray:
        """Fingertip position [m] for joint positions `q`, without touching the simulation."""
        q_arr = self._validated(q, "joint positions")
        self._fk_data.qpos[self._qpos_idx] = q_arr
        mujoco.mj_kinematics(self.model, self._fk_data)
        return np.array(self._fk_data.site_xpos[self._ee_site], dtype=np.float64)

    def _validated(self, q: npt.ArrayLike, what: str) -> FloatArray:
        arr = np.asarray(q, dtype=np.float64).reshape(-1)
        n = self.robot.num_joints
        if arr.shape != (n,):
            raise ValueError(
                f"{what} has {arr.size} values, expected {n} (one per joint: "
                f"{', '.join(self.robot.joint_names)})"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} = {arr.tolist()} contains non-finite values")
        return arr
