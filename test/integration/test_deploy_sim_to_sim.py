"""Sim-to-sim: a policy trained here, exported to ONNX, deployed through policy_server against
the sim_bridge node (realtime MuJoCo) over real DDS, compared with its in-process evaluation.

What differs between the two: both rate-limit the commands with the robot's limits, but the
deployed arm runs in real time with DDS in between, and the server samples the joint states
of a 100 Hz publisher at 50 Hz with an unsynchronised phase. The margin below covers that.

Both nodes run as deploy.launch.py use_sim:=true starts them (config/deploy.yaml), with the
two episode overrides of cgrpo_ros/testing/deploy_episodes.py (no hold while disabled, no
blend-in); the same episodes and scoring as benchmarks/deploy_reach.py, which reports success rates.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from cgrpo_ros.testing.ros_processes import isolated_ros_env

rclpy = pytest.importorskip("rclpy")
from cgrpo_ros.core.config import CGRPOConfig  # noqa: E402
from cgrpo_ros.core.policy_artifact import OnnxPolicy  # noqa: E402
from cgrpo_ros.robot.config import load_robot_config  # noqa: E402
from cgrpo_ros.robot.reach_task import ReachTask  # noqa: E402
from cgrpo_ros.session import train_single_process  # noqa: E402
from cgrpo_ros.testing.deploy_episodes import (  # noqa: E402
    DeployProbe,
    deploy_probe,
    deployment,
    evaluate_in_process,
)
from sim_bridge.envs import ENV_ID  # noqa: E402

pytestmark = pytest.mark.integration

ROBOT = load_robot_config()
TASK = ReachTask(ROBOT)
DT = ROBOT.control_period_s
STEPS = ROBOT.reach.episode_steps
EPISODES = 4
EVAL_SEED = 500
TRAIN_ITERATIONS = 12  # ~30 s of CPU here; see docs/deploy.md for what it reaches
# Mean return over EPISODES, deployed vs in-process, relative (stated in docs/deploy.md).
# The training env rate-limits its commands with the robot's limits exactly as the policy
# server does, so only timing over DDS (realtime sim) separates the two.
MARGIN = 0.15  # measured 6.5 % (docs/deploy.md)
# Commands per episode the server must have sent (of STEPS). Timing is a benchmark figure
# (docs/benchmarks.md); this only catches a server that stalls, even on a loaded machine.
MIN_COMMAND_SHARE = 0.5


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp("run") / "arm7"
    config = CGRPOConfig.for_variant("full", num_policies=2, num_groups=2, seed=0)
    start = time.monotonic()
    train_single_process(
        env_id=ENV_ID,
        config=config,
        iterations=TRAIN_ITERATIONS,
        steps_per_iteration=1000,
        run_dir=run_dir,
        checkpoint_every=1000,
    )
    path = run_dir / "policy_0.onnx"
    policy = OnnxPolicy.from_file(path)
    # Training wrote the reach task's layout into the artifact, so the robot can check it.
    assert policy.metadata.obs_names == TASK.observation_names()
    assert policy.metadata.action_names == TASK.action_names()
    # The goals of these episodes are replayed over DDS.
    in_process = evaluate_in_process(path, EPISODES, EVAL_SEED)
    return {"path": path, "in_process": in_process, "train_s": time.monotonic() - start}


@pytest.fixture(scope="module")
def probe() -> Iterator[tuple[DeployProbe, dict[str, str]]]:
    env = isolated_ros_env()
    with deploy_probe(env, "sim_to_sim_probe", ROBOT) as p:
        yield p, env


@pytest.mark.parametrize("control_mode", ["event", "timer"])
def test_deployed_return_matches_in_process(
    trained: dict[str, Any], probe: tuple[DeployProbe, dict[str, str]], control_mode: str
) -> None:
    """In both control modes (issue 15): event ticks on every other joint state of the
    100 Hz sim_bridge (capped at 50 Hz), timer ticks at 50 Hz on its own phase."""
    p, env = probe
    # A 10 Hz status (deploy.yaml: 5 Hz) confirms each goal sooner; it changes no control.
    extra = ["status_rate_hz:=10.0", f"control_mode:={control_mode}"]
    with deployment(env, trained["path"], extra=extra) as deployed:
        p.wait_started(deployed)
        episodes = [p.run_episode(TASK, goal) for goal in trained["in_process"].goals]
        p.enable(False)
        status = p.fresh_status()
        assert deployed.running(), deployed.output()
    assert deployed.exit_codes == {"policy_server": 0, "sim_bridge": 0}, deployed.output()
    for episode in episodes:
        c = np.asarray(episode.commands)
        assert len(c) > MIN_COMMAND_SHARE * STEPS
        assert np.isfinite(c).all()
        assert (c >= ROBOT.lower).all() and (c <= ROBOT.upper).all()
        v_step = np.asarray(ROBOT.velocity_limit) * DT
        assert (np.abs(np.diff(c, axis=0)) <= v_step * (1 + 1e-9) + 1e-12).all()
    ours = trained["in_process"]
    in_process = float(np.mean(ours.returns))
    deployed_returns = [e.episode_return for e in episodes]
    got = float(np.mean(deployed_returns))
    distances = [e.final_distance for e in episodes]
    report = (
        f"{control_mode} mode: trained {trained['train_s']:.0f}s; mean return over "
        f"{EPISODES} episodes: in-process "
        f"{in_process:.2f}, deployed over DDS {got:.2f} "
        f"(per episode {np.round(deployed_returns, 2).tolist()}); success rate in-process "
        f"{np.mean(ours.successes):.2f}, deployed {np.mean([e.success for e in episodes]):.2f}; "
        f"final distance [m] in-process {np.round(ours.final_distances, 3).tolist()}, "
        f"deployed {np.round(distances, 3).tolist()}; holds {status['holds']}"
    )
    print(report)
    # Success rates are only reported: this CI-budget policy (12 iterations) hardly ever
    # succeeds, so equal rates would say nothing. benchmarks/deploy_reach.py scores them.
    assert abs(got - in_process) <= MARGIN * abs(in_process), report
