"""ArmSim, the reach task and the gymnasium env on the real MuJoCo model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from cgrpo_ros.robot.config import RobotConfig, load_robot_config
from cgrpo_ros.robot.kinematics import forward_kinematics
from cgrpo_ros.robot.reach_task import ReachTask
from sim_bridge.arm_sim import ArmSim
from sim_bridge.envs import ENV_ID, Arm7ReachEnv, register_envs

# A pose well inside the limits whose fingertip lies inside the goal box (checked below).
REACHABLE_OFFSET = np.array([0.3, 0.25, -0.2, 0.35, 0.3, -0.2, 0.5])


@pytest.fixture(scope="module")
def robot() -> RobotConfig:
    return load_robot_config()


@pytest.fixture
def sim(robot: RobotConfig) -> ArmSim:
    return ArmSim(robot)


@pytest.fixture(scope="module")
def task(robot: RobotConfig) -> ReachTask:
    return ReachTask(robot)


@pytest.fixture(scope="module")
def joint_robot(robot: RobotConfig) -> RobotConfig:
    """The same arm with reach.action = joint_position (absolute joint targets)."""
    reach = dataclasses.replace(robot.reach, action="joint_position")
    return dataclasses.replace(robot, reach=reach)


def test_model_loads_at_home(sim: ArmSim, robot: RobotConfig) -> None:
    assert sim.model.nu == robot.num_joints
    assert sim.timestep == pytest.approx(0.002)
    np.testing.assert_allclose(sim.joint_positions(), robot.home)
    np.testing.assert_allclose(sim.joint_velocities(), 0.0)


@pytest.mark.parametrize("offset_scale", [0.5, 1.0, -1.0])
def test_position_control_reaches_the_command(
    sim: ArmSim, robot: RobotConfig, offset_scale: float
) -> None:
    target = np.clip(robot.home_array + offset_scale * REACHABLE_OFFSET, robot.lower, robot.upper)
    applied = sim.set_position_command(target)
    np.testing.assert_allclose(applied, target)
    sim.advance(1.0)
    assert sim.time == pytest.approx(1.0)
    np.testing.assert_allclose(sim.joint_positions(), target, atol=0.01)
    np.testing.assert_allclose(sim.joint_velocities(), 0.0, atol=0.05)


def test_holds_home_under_gravity(sim: ArmSim, robot: RobotConfig) -> None:
    sim.advance(2.0)
    np.testing.assert_allclose(sim.joint_positions(), robot.home, atol=1e-3)


def test_command_is_clipped_to_the_joint_limits(sim: ArmSim, robot: RobotConfig) -> None:
    applied = sim.set_position_command(np.full(robot.num_joints, 10.0))
    np.testing.assert_allclose(applied, robot.upper)
    np.testing.assert_allclose(sim.position_command(), robot.upper)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (np.zeros(6), "6 values, expected 7"),
        (np.zeros(8), "8 values, expected 7"),
        (np.array([0.0, 0, 0, -1, 0, 1, np.nan]), "non-finite"),
        (np.array([0.0, 0, 0, -1, 0, 1, np.inf]), "non-finite"),
    ],
)
def test_bad_command_raises_and_is_not_applied(
    sim: ArmSim, command: np.ndarray, message: str
) -> None:
    before = sim.position_command()
    with pytest.raises(ValueError, match=message):
        sim.set_position_command(command)
    np.testing.assert_array_equal(sim.position_command(), before)


def test_model_and_config_must_agree(robot: RobotConfig) -> None:
    lower = list(robot.position_lower)
    lower[3] = -2.5
    with pytest.raises(ValueError, match=r"joint4.*range.*edit both"):
        ArmSim(dataclasses.replace(robot, position_lower=tuple(lower)))


def test_forward_kinematics_matches_the_simulation(sim: ArmSim, robot: RobotConfig) -> None:
    sim.set_position_command(robot.home_array + REACHABLE_OFFSET)
    sim.advance(0.3)  # mid-motion: FK must agree for any state, not only at rest
    q = sim.joint_positions()
    np.testing.assert_allclose(sim.forward_kinematics(q), sim.ee_position(), atol=1e-12)
    np.testing.assert_allclose(forward_kinematics(q, robot), sim.ee_position(), atol=1e-12)
    np.testing.assert_allclose(forward_kinematics(q), sim.ee_position(), atol=1e-12)
    # The fingertip of the Panda-class "ready" pose, from the DH table by hand.
    np.testing.assert_allclose(forward_kinematics(robot.home), [0.307, 0.0, 0.487], atol=2e-3)


def test_reset_restores_home_and_keeps_the_clock(sim: ArmSim, robot: RobotConfig) -> None:
    sim.set_position_command(robot.home_array + REACHABLE_OFFSET)
    sim.step(50)
    t = sim.time
    sim.reset()
    assert sim.time == pytest.approx(t)  # ROS stamps derived from it stay monotonic
    np.testing.assert_allclose(sim.joint_positions(), robot.home)
    np.testing.assert_allclose(sim.position_command(), robot.home)


def test_reach_reward_is_progress_by_hand(task: ReachTask, robot: RobotConfig) -> None:
    # reward = progress_reward_per_m x (distance before - distance after) (+ bonus if the step
    # ends within the threshold); the goal is placed relative to the fingertip at q.
    q = robot.home_array + REACHABLE_OFFSET
    q_before = robot.home_array
    tip, tip_before = forward_kinematics(q, robot), forward_kinematics(q_before, robot)
    far_goal = tip + np.array([0.1, -0.2, 0.05])
    d_after = np.sqrt(0.1**2 + 0.2**2 + 0.05**2)
    d_before = np.linalg.norm(tip_before - far_goal)
    scale = robot.reach.progress_reward_per_m
    assert task.reward(q_before, q, far_goal) == pytest.approx(scale * (d_before - d_after))
    assert task.reward(q, q, far_goal) == 0.0  # no motion, no progress
    assert not task.is_success(q, far_goal)
    near_goal = tip + np.array([0.0, 0.03, 0.0])
    d_before = np.linalg.norm(tip_before - near_goal)
    expected = scale * (d_before - 0.03) + robot.reach.success_bonus
    assert task.reward(q_before, q, near_goal) == pytest.approx(expected)
    assert task.is_success(q, near_goal)


def test_observation_names_and_layout(task: ReachTask, robot: RobotConfig) -> None:
    names = task.observation_names()
    assert len(names) == task.obs_dim == 2 * robot.num_joints + 9
    assert names[0] == "joint_pos/joint1" and names[7] == "joint_vel/joint1"
    kinds = ("goal", "fingertip", "goal_offset")
    assert names[14:] == [f"{kind}/{i}" for kind in kinds for i in range(3)]
    assert task.action_names() == ["fingertip_delta/x", "fingertip_delta/y", "fingertip_delta/z"]
    q = robot.home_array + REACHABLE_OFFSET
    qd = np.arange(robot.num_joints, dtype=np.float64)
    goal = np.array([0.4, 0.1, 0.3])
    obs = task.observation(q, qd, goal)
    assert obs.dtype == np.float32 and obs.shape == (task.obs_dim,)
    np.testing.assert_allclose(obs[names.index("joint_pos/joint4")], q[3], rtol=1e-6)
    np.testing.assert_allclose(obs[names.index("joint_vel/joint7")], 6.0)
    np.testing.assert_allclose(obs[14:17], goal, rtol=1e-6)
    tip = forward_kinematics(q, robot)
    np.testing.assert_allclose(obs[17:20], tip, rtol=1e-6)
    np.testing.assert_allclose(obs[20:23], goal - tip, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(task.action_low, -1.0)
    np.testing.assert_array_equal(task.action_high, 1.0)


def test_joint_position_mode_commands_joints(joint_robot: RobotConfig) -> None:
    task = ReachTask(joint_robot)
    assert task.action_names() == list(joint_robot.joint_names)
    np.testing.assert_allclose(task.action_low, joint_robot.position_lower, rtol=1e-6)
    beyond = joint_robot.upper + 1.0
    np.testing.assert_array_equal(task.joint_target(beyond, joint_robot.home), joint_robot.upper)
    np.testing.assert_array_equal(task.rest_action(), np.float32(joint_robot.home_array))


def test_jacobian_matches_finite_differences(task: ReachTask, robot: RobotConfig) -> None:
    q = robot.home_array + REACHABLE_OFFSET
    h = 1e-6
    numeric = np.stack(
        [
            (forward_kinematics(q + h * e, robot) - forward_kinematics(q - h * e, robot)) / (2 * h)
            for e in np.eye(robot.num_joints)
        ],
        axis=1,
    )
    np.testing.assert_allclose(task._fk.jacobian(q), numeric, atol=1e-6)


def test_fingertip_step_is_damped_least_squares_by_hand(
    task: ReachTask, robot: RobotConfig
) -> None:
    # dq = J^T (J J^T + lambda^2 I)^-1 (a * step) + (I - J^+ J) k (home - q), recomputed here.
    from cgrpo_ros.robot.reach_task import DLS_DAMPING_M, NULLSPACE_GAIN

    q = robot.home_array + REACHABLE_OFFSET
    action = np.array([0.5, -1.0, 0.25])
    jac = task._fk.jacobian(q)
    pinv = jac.T @ np.linalg.inv(jac @ jac.T + DLS_DAMPING_M**2 * np.eye(3))
    step = action * robot.reach.fingertip_step_m
    dq = pinv @ step + (np.eye(7) - pinv @ jac) @ (NULLSPACE_GAIN * (robot.home_array - q))
    target = task.joint_target(action, q)
    np.testing.assert_allclose(target, q + dq, atol=1e-12)
    # ... and the fingertip moves by about the asked step (the damping shortens it a little).
    moved = forward_kinematics(target, robot) - forward_kinematics(q, robot)
    np.testing.assert_allclose(moved, step, atol=0.2 * np.linalg.norm(step))
    # Actions are clipped to [-1, 1]: twice the full step is the full step.
    np.testing.assert_array_equal(task.joint_target(2 * action, q), task.joint_target(
        np.clip(2 * action, -1, 1), q))  # fmt: skip
    # At home with a zero action nothing moves (the null-space pull is zero there too).
    np.testing.assert_allclose(task.joint_target(np.zeros(3), robot.home_array), robot.home)


@pytest.mark.parametrize("bad", [[0.1, 0.2], [0.1, np.nan, 0.0], [np.inf, 0.0, 0.0]])
def test_joint_target_refuses_bad_actions(task: ReachTask, robot: RobotConfig, bad: list) -> None:
    message = r"action = .*expected 3 finite numbers \(fingertip_delta/x"
    with pytest.raises(ValueError, match=message):
        task.joint_target(bad, robot.home_array)


@pytest.mark.parametrize("action_mode", ["fingertip_delta", "joint_position"])
def test_env_passes_gymnasium_checker(robot: RobotConfig, action_mode: str) -> None:
    reach = dataclasses.replace(robot.reach, action=action_mode)
    env = Arm7ReachEnv(robot=dataclasses.replace(robot, reach=reach))
    check_env(env, skip_render_check=True)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == ((3,) if action_mode == "fingertip_delta" else (7,))
    env.close()


def test_registered_env_is_the_config_default(robot: RobotConfig) -> None:
    register_envs()
    register_envs()  # idempotent
    env = gymnasium.make(ENV_ID)
    assert env.unwrapped.task.action_mode == robot.reach.action == "fingertip_delta"
    env.close()


def test_env_truncates_and_is_deterministic(robot: RobotConfig) -> None:
    def rollout(seed: int) -> np.ndarray:
        env = Arm7ReachEnv(robot=robot)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for t in range(robot.reach.episode_steps):
            obs, _, terminated, truncated, info = env.step(env.action_space.sample())
            trace.append(obs)
            assert not terminated and isinstance(info["is_success"], bool)
            assert truncated == (t == robot.reach.episode_steps - 1)
        return np.stack(trace)

    np.testing.assert_array_equal(rollout(3), rollout(3))


def test_scripted_fingertip_controller_reaches_every_goal(robot: RobotConfig) -> None:
    # A proportional controller on the observed goal offset: what a policy has to learn.
    env = Arm7ReachEnv(robot=robot)
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        start = info["distance"]
        total = 0.0
        for _ in range(robot.reach.episode_steps):
            action = np.clip(obs[20:23] / robot.reach.fingertip_step_m, -1.0, 1.0)
            obs, reward, _, _, info = env.step(action.astype(np.float32))
            total += reward
        assert info["is_success"] and info["distance"] < 0.01, (seed, info["distance"])
        # Progress rewards sum to scale x (start - end distance), plus the success bonuses.
        progress = robot.reach.progress_reward_per_m * (start - info["distance"])
        assert progress < total < progress + robot.reach.episode_steps * robot.reach.success_bonus
    env.close()


def test_scripted_joint_controller_reaches_the_goal(joint_robot: RobotConfig) -> None:
    # The goal is the fingertip of a known pose, so commanding that pose (no IK) must succeed.
    robot = joint_robot
    q_goal = robot.home_array + REACHABLE_OFFSET
    goal = forward_kinematics(q_goal, robot)
    reach = robot.reach
    assert np.all(goal > reach.goal_low) and np.all(goal < reach.goal_high)
    env = Arm7ReachEnv(robot=robot)
    obs, info = env.reset(seed=0, options={"goal": goal})
    assert not info["is_success"]
    np.testing.assert_allclose(obs[14:17], goal, rtol=1e-6)
    # Move there along a straight line in joint space over 25 steps, then hold.
    q0 = robot.home_array
    rewards = []
    for t in range(50):
        alpha = min(1.0, (t + 1) / 25)
        _, reward, _, _, info = env.step((q0 + alpha * (q_goal - q0)).astype(np.float32))
        rewards.append(reward)
    assert info["is_success"]
    assert info["distance"] < 0.01
    assert rewards[0] > 0.0  # moving towards the goal is rewarded


def test_env_rate_limits_commands_like_the_policy_server(joint_robot: RobotConfig) -> None:
    """A far target reaches the joints only as fast as the robot's limits allow."""
    robot = joint_robot
    env = Arm7ReachEnv(robot=robot)
    env.reset(seed=0)
    previous = robot.home_array.copy()
    v_step = np.asarray(robot.velocity_limit) * robot.control_period_s
    for _ in range(5):
        env.step(np.asarray(robot.upper, dtype=np.float32))
        command = env.unwrapped.sim.position_command()
        assert np.all(np.abs(command - previous) <= v_step + 1e-9)
        previous = command
    assert np.any(np.abs(previous - robot.home_array) > 1e-3)  # it does move towards it
    env.close()


def test_untrained_policies_hold_the_arm_at_home(
    robot: RobotConfig, joint_robot: RobotConfig, tmp_path: Path
) -> None:
    """TaskSpec reads the env's rest action: an untrained policy keeps the arm at home."""
    from cgrpo_ros.core.config import CGRPOConfig
    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from cgrpo_ros.session import TrainingSession
    from cgrpo_ros.tasks import TaskSpec

    spec = TaskSpec.from_env(ENV_ID)
    assert spec.rest_action == [0.0, 0.0, 0.0]  # no fingertip step
    assert spec.action_mode == "fingertip_delta" and spec.obs_layout_version == 2
    config = CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, seed=0)
    session = TrainingSession(task=spec, config=config, run_dir=tmp_path, tensorboard=False)
    env = Arm7ReachEnv(robot)
    obs, _ = env.reset(seed=3)
    for i in range(2):
        policy = OnnxPolicy(session.policy_artifact(i))
        assert policy.metadata.action_mode == "fingertip_delta"
        assert policy.metadata.extra["fingertip_step_m"] == repr(robot.reach.fingertip_step_m)
        # The output layer's weights start at gain 0.01: the mean step is about zero ...
        assert np.abs(policy.deterministic_action(obs)).max() < 0.05
    # ... so the arm stays near home (a step of 0.05 moves the fingertip 2 mm).
    for _ in range(10):
        obs, *_ = env.step(policy.deterministic_action(obs))
    assert np.abs(env.sim.joint_positions() - robot.home_array).max() < 0.05
    session.logger.close()
    # With joint-position actions the rest action is the home pose, not 0 rad ...
    assert Arm7ReachEnv(joint_robot).rest_action() == pytest.approx(list(robot.home), abs=1e-6)
    # ... and a task without a rest action (symmetric locomotion bounds) starts at 0.
    assert TaskSpec.from_env("InvertedPendulum-v5").rest_action is None
