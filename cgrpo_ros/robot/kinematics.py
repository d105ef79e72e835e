"""Forward kinematics of a robot from its MJCF: fingertip position and Jacobian from joint
positions alone, no simulation.

The policy server and a real arm's worker need this (the reach task's observation and reward
are in fingertip coordinates); MuJoCo is used only as the kinematics library here, on a private
MjData. `load_model` also checks that the MJCF and the robot config agree on joint names,
order and limits, so a model edited without its config (or the reverse) fails at start-up.
"""

from __future__ import annotations

import functools
from pathlib import Path

import mujoco
import numpy as np
import numpy.typing as npt

from cgrpo_ros.robot.config import RobotConfig, load_robot_config

FloatArray = npt.NDArray[np.float64]

EE_SITE = "ee_site"
# Joint ranges in the MJCF and limits in the YAML are written with 4 decimals.
_LIMIT_TOLERANCE = 1e-6


def default_model_path() -> Path:
    """The shipped MJCF `cgrpo_ros/robot/assets/arm7.xml`."""
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
