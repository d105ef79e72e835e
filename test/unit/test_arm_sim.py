"""ArmSim, the reach task and the gymnasium env on the real MuJoCo model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim_bridge.arm_sim import ArmSim, forward_kinematics
from sim_bridge.envs import ENV_ID, Arm7ReachEnv, register_envs
from sim_bridge.reach_task import ReachTask
from sim_bridge.robot_config import RobotConfig, load_robot_config

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


def test_reach_reward_is_minus_distance_by_hand(task: ReachTask, robot: RobotConfig) -> None:
    q = robot.home_array + REACHABLE_OFFSET
    tip = forward_kinematics(q, robot)
    far_goal = tip + np.array([0.1, -0.2, 0.05])
    assert task.reward(q, far_goal) == pytest.approx(-np.sqrt(0.1**2 + 0.2**2 + 0.05**2))
    assert not task.is_success(q, far_goal)
    near_goal = tip + np.array([0.0, 0.03, 0.0])
    expected = -0.03 + robot.reach.success_bonus
    assert task.reward(q, near_goal) == pytest.approx(expected)
    assert task.is_success(q, near_goal)


def test_observation_names_and_layout(task: ReachTask, robot: RobotConfig) -> None:
    names = task.observation_names()
    assert len(names) == task.obs_dim == 2 * robot.num_joints + 3
    assert names[0] == "joint_pos/joint1" and names[7] == "joint_vel/joint1"
    assert names[-3:] == ["goal/0", "goal/1", "goal/2"]
    assert task.action_names() == list(robot.joint_names)
    q = robot.home_array
    qd = np.arange(robot.num_joints, dtype=np.float64)
    obs = task.observation(q, qd, [0.4, 0.1, 0.3])
    assert obs.dtype == np.float32 and obs.shape == (task.obs_dim,)
    np.testing.assert_allclose(obs[names.index("joint_pos/joint4")], q[3], rtol=1e-6)
    np.testing.assert_allclose(obs[names.index("joint_vel/joint7")], 6.0)
    np.testing.assert_allclose(obs[-3:], [0.4, 0.1, 0.3], rtol=1e-6)
    np.testing.assert_allclose(task.action_low, robot.position_lower, rtol=1e-6)


def test_env_passes_gymnasium_checker(robot: RobotConfig) -> None:
    register_envs()
    register_envs()  # idempotent
    env = gymnasium.make(ENV_ID)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        assert env.observation_space.dtype == np.float32
        assert env.action_space.shape == (robot.num_joints,)
    finally:
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


def test_scripted_controller_reaches_the_goal(robot: RobotConfig) -> None:
    # The goal is the fingertip of a known pose, so commanding that pose (no IK) must succeed.
    q_goal = robot.home_array + REACHABLE_OFFSET
    goal = forward_kinematics(q_goal, robot)
    reach = robot.reach
    assert np.all(goal > reach.goal_low) and np.all(goal < reach.goal_high)
    env = Arm7ReachEnv(robot=robot)
    obs, info = env.reset(seed=0, options={"goal": goal})
    assert not info["is_success"]
    np.testing.assert_allclose(obs[-3:], goal, rtol=1e-6)
    # Move there along a straight line in joint space over 25 steps, then hold.
    q0 = robot.home_array
    rewards = []
    for t in range(50):
        alpha = min(1.0, (t + 1) / 25)
        _, reward, _, _, info = env.step((q0 + alpha * (q_goal - q0)).astype(np.float32))
        rewards.append(reward)
    assert info["is_success"]
    assert info["distance"] < 0.01
    assert rewards[-1] > rewards[0]


def test_env_rate_limits_commands_like_the_policy_server() -> None:
    """A far target reaches the joints only as fast as the robot's limits allow."""
    register_envs()
    env = gymnasium.make(ENV_ID)
    robot = env.unwrapped.robot
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


def test_untrained_policies_hold_the_arm_at_home(robot: RobotConfig, tmp_path: Path) -> None:
    """TaskSpec reads the env's rest action: an untrained policy commands home, not 0 rad."""
    from cgrpo_ros.core.config import CGRPOConfig
    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from cgrpo_ros.training import TaskSpec, TrainingSession

    spec = TaskSpec.from_env(ENV_ID)
    assert spec.rest_action == pytest.approx(list(robot.home), abs=1e-6)
    config = CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, seed=0)
    session = TrainingSession(task=spec, config=config, run_dir=tmp_path, tensorboard=False)
    env = Arm7ReachEnv(robot)
    obs, _ = env.reset(seed=3)
    for i in range(2):
        action = OnnxPolicy(session.policy_artifact(i)).deterministic_action(obs)
        # The output layer's weights start at gain 0.01: the mean is home within ~0.05 rad.
        assert np.abs(action - np.asarray(robot.home)).max() < 0.05, action
    session.logger.close()
    # A task without a rest action (symmetric locomotion bounds) starts at 0 as before.
    assert TaskSpec.from_env("InvertedPendulum-v5").rest_action is None
