"""MuJoCo simulation of the arm7 robot behind a position-command interface.

`ArmSim` is what a ros2_control position interface looks like from the outside: a joint
position command in, joint positions / velocities / efforts out. It checks at construction
that the MJCF and the robot config agree on joint names, order and limits, so a model edited
without its config (or the reverse) fails at start-up rather than during deployment.
"""

from __future__ import annotations

import functools
from pathlib import Path

import mujoco
import numpy as np
import numpy.typing as npt

from sim_bridge.robot_config import RobotConfig, load_robot_config

FloatArray = npt.NDArray[np.float64]

EE_SITE = "ee_site"
GOAL_BODY = "goal"
# Joint ranges in the MJCF and limits in the YAML are written with 4 decimals.
_LIMIT_TOLERANCE = 1e-6


def default_model_path() -> Path:
    """The shipped MJCF `sim_bridge/assets/arm7.xml`."""
    return Path(__file__).resolve().parent / "assets" / "arm7.xml"


def load_model(robot: RobotConfig, model_path: str | Path | None = None) -> mujoco.MjModel:
    """Load the MJCF and check it matches `robot` (joint names, order, limits, actuators)."""
    path = Path(model_path) if model_path else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"MJCF model not found: {path}")
    model = mujoco.MjModel.from_xml_path(str(path))
    for i, name in enumerate(robot.joint_names):
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise ValueError(f"{path}: joint '{name}' from the robot config is not in the model")
        if model.jnt_type[jid] != mujoco.mjtJoint.mjJNT_HINGE:
            raise ValueError(f"{path}: joint '{name}' must be a hinge joint")
        lo, hi = model.jnt_range[jid]
        if (
            abs(lo - robot.position_lower[i]) > _LIMIT_TOLERANCE
            or abs(hi - robot.position_upper[i]) > _LIMIT_TOLERANCE
        ):
            raise ValueError(
                f"{path}: joint '{name}' range [{lo}, {hi}] differs from the robot config "
                f"limits [{robot.position_lower[i]}, {robot.position_upper[i]}]; edit both"
            )
        aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
        if aid < 0 or model.actuator_trnid[aid, 0] != jid:
            raise ValueError(f"{path}: needs a position actuator named '{name}' on joint '{name}'")
    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, EE_SITE) < 0:
        raise ValueError(f"{path}: the model has no fingertip site '{EE_SITE}'")
    return model


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


class ForwardKinematics:
    """Fingertip position from joint positions alone (for a ROS worker's reward).

    Owns a private MjModel/MjData so it needs no simulation, only the MJCF.
    """

    def __init__(self, robot: RobotConfig, model_path: str | Path | None = None) -> None:
        self.robot = robot
        self.model = load_model(robot, model_path)
        self._data = mujoco.MjData(self.model)
        self._qpos_idx = np.array(
            [
                self.model.jnt_qposadr[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, n)]
                for n in robot.joint_names
            ],
            dtype=np.int64,
        )
        self._ee_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        joint_ids = [
            mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in robot.joint_names
        ]
        self._dof_idx = np.array([self.model.jnt_dofadr[j] for j in joint_ids], dtype=np.int64)

    def __call__(self, q: npt.ArrayLike) -> FloatArray:
        arr = np.asarray(q, dtype=np.float64).reshape(-1)
        if arr.shape != (self.robot.num_joints,) or not np.all(np.isfinite(arr)):
            raise ValueError(
                f"joint positions = {arr.tolist()}: expected {self.robot.num_joints} finite values"
            )
        self._data.qpos[self._qpos_idx] = arr
        mujoco.mj_kinematics(self.model, self._data)
        return np.array(self._data.site_xpos[self._ee_site], dtype=np.float64)

    def jacobian(self, q: npt.ArrayLike) -> FloatArray:
        """d fingertip / d q at `q`: 3 x num_joints, columns in joint_names order."""
        self(q)  # validates q and sets the kinematics
        mujoco.mj_comPos(self.model, self._data)  # mj_jacSite needs the com-based frames
        jac = np.zeros((3, self.model.nv))
        mujoco.mj_jacSite(self.model, self._data, jac, None, self._ee_site)
        return jac[:, self._dof_idx]


@functools.cache
def _default_robot() -> RobotConfig:
    return load_robot_config()


_FK_CACHE: dict[tuple[RobotConfig, str], ForwardKinematics] = {}


def forward_kinematics(
    q: npt.ArrayLike, robot: RobotConfig | None = None, model_path: str | Path | None = None
) -> FloatArray:
    """Fingertip xyz [m] for joint positions `q` (default robot: the shipped arm7.yaml).

    The model is loaded once per (robot, model) and cached: this runs every control step.
    """
    if robot is None:
        robot = _default_robot()
    key = (robot, str(model_path or default_model_path()))
    fk = _FK_CACHE.get(key)
    if fk is None:
        fk = _FK_CACHE[key] = ForwardKinematics(robot, model_path)
    return fk(q)
