"""Reach episodes of a deployed policy: policy_server against sim_bridge over DDS.

Shared by test/integration/test_deploy_sim_to_sim.py and benchmarks/deploy_reach.py, so the
test and the benchmark start, drive and score deployed episodes the same way.

The two nodes run with the parameters deploy.launch.py use_sim:=true gives them (config/
deploy.yaml, built by `cgrpo deploy --use-sim`'s `build_commands`), plus EPISODE_OVERRIDES,
without which deployed episodes are not the in-process env's episodes (see there).

One episode, as `Arm7ReachEnv` runs it in-process: disable the server, reset the sim to home,
publish the goal, enable, and let episode_steps control periods pass. It is scored from the
joint states the probe recorded: the reward at the end of each control period and the
fingertip distance at the end of the last one, each from the joint state nearest in time, with
ReachTask's own `reward` / `distance` / success threshold (`info["is_success"]` of the last
step in-process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cgrpo_ros.robot.config import RobotConfig
from cgrpo_ros.robot.reach_task import ReachTask
from cgrpo_ros.testing.ros_processes import (
    call_service,
    probe_node,
    process_output,
    start_node_process,
    stop_process,
    wait_for,
)

STARTUP_TIMEOUT_S = 40.0
SERVICE_TIMEOUT_S = 10.0
GOAL_TIMEOUT_S = 5.0
SETTLE_S = 0.2  # after the reset, before enabling: the arm is at rest at home
TAIL_S = 0.1  # after the episode's last period, so a joint state exists on both sides of it

# policy_server parameters that differ from config/deploy.yaml, and why. Both are needed for
# a deployed episode to be the in-process env's episode (start at rest at home, the policy in
# control from the first step); `cgrpo deploy`/the launch file leave them at the deploy.yaml
# values, which are right for a real arm but not for back-to-back scored episodes.
EPISODE_OVERRIDES: dict[str, str] = {
    # deploy.yaml: true = keep holding the last pose while disabled. After /sim_bridge/reset
    # the held command would pull the arm back to where the previous episode ended, and
    # ~/enable would blend in from there. false: silent while disabled, and ~/enable restarts
    # from the measured pose (home, after the reset).
    "publish_when_disabled": "false",
    # deploy.yaml: 2.0 s, as long as a whole episode (100 periods at 50 Hz): the policy's
    # action would reach the arm only at the last step. The training env has no blend.
    "blend_time_s": "0.0",
}


def deploy_commands(model: Path, extra: Sequence[str] = ()) -> dict[str, list[str]]:
    """argv of sim_bridge and policy_server as `cgrpo deploy --use-sim MODEL` starts them
    (deploy.launch.py use_sim:=true's parameters), with EPISODE_OVERRIDES and then `extra`
    (policy_server `name:=value` items, which win)."""
    from cgrpo_ros.cli.deploy import build_commands

    overrides = [f"{name}:={value}" for name, value in EPISODE_OVERRIDES.items()]
    args = argparse.Namespace(
        model=Path(model),
        robot_config=None,
        controller_name=None,
        control_rate_hz=None,
        params_file=None,
        use_sim=True,
        extra=[*overrides, *extra],
    )
    return build_commands(args)


@dataclass
class Deployment:
    """The two node processes (stopped by `stop`, always call it: see `deployment`)."""

    sim: subprocess.Popen[bytes]
    server: subprocess.Popen[bytes]
    exit_codes: dict[str, int] = field(default_factory=dict)

    def output(self) -> str:
        return (
            f"--- policy_server ---\n{process_output(self.server)}\n"
            f"--- sim_bridge ---\n{process_output(self.sim)}"
        )

    def running(self) -> bool:
        return self.server.poll() is None and self.sim.poll() is None

    def stop(self, timeout: float = 10.0) -> dict[str, int]:
        """SIGINT both (SIGKILL after `timeout`); exit codes by node, 0 = clean shutdown."""
        if not self.exit_codes:
            self.exit_codes = {
                "policy_server": stop_process(self.server, timeout=timeout),
                "sim_bridge": stop_process(self.sim, timeout=timeout),
            }
        return self.exit_codes


@contextmanager
def deployment(
    env: Mapping[str, str], model: Path, extra: Sequence[str] = ()
) -> Iterator[Deployment]:
    """Start sim_bridge and policy_server (as `deploy_commands`), stop both on exit."""
    commands = deploy_commands(model, extra)
    sim = start_node_process(commands["sim_bridge"], env)
    try:
        server = start_node_process(commands["policy_server"], env)
    except BaseException:
        stop_process(sim)
        raise
    running = Deployment(sim=sim, server=server)
    try:
        yield running
    finally:
        running.stop()


@dataclass
class InProcessResult:
    goals: list[list[float]]  # the goal of each episode: the deployed episodes replay these
    returns: list[float]
    successes: list[bool]  # info["is_success"] on each episode's last step
    final_distances: list[float]  # info["distance"] on each episode's last step [m]


def evaluate_in_process(model: Path, episodes: int, seed: int) -> InProcessResult:
    """`evaluate_with_success` of the ONNX policy on Arm7Reach (deterministic actions, env
    seeds seed..seed+episodes-1: what `cgrpo eval` prints), also recording goals and final
    distances."""
    import gymnasium as gym

    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from cgrpo_ros.core.rollout import evaluate_with_success
    from cgrpo_ros.tasks import make_env
    from sim_bridge.envs import ENV_ID

    class EpisodeEnds(gym.Wrapper[Any, Any, Any, Any]):
        """Records the goal at each reset and the distance on each episode's last step."""

        def __init__(self, env: gym.Env[Any, Any]) -> None:
            super().__init__(env)
            self.goals: list[list[float]] = []
            self.final_distances: list[float] = []

        def reset(self, **kwargs: Any) -> Any:
            obs, info = self.env.reset(**kwargs)
            self.goals.append([float(x) for x in info["goal"]])
            return obs, info

        def step(self, action: Any) -> Any:
            obs, reward, term, trunc, info = self.env.step(action)
            if term or trunc:
                self.final_distances.append(float(info["distance"]))
            return obs, reward, term, trunc, info

    policy = OnnxPolicy.from_file(model)
    env = EpisodeEnds(make_env(ENV_ID))
    try:
        returns, successes = evaluate_with_success(
            env, policy.deterministic_action, episodes, seed=seed
        )
    finally:
        env.close()
    if successes is None:
        raise RuntimeError(f"{ENV_ID} reported no info['is_success']")
    return InProcessResult(
        goals=env.goals,
        returns=[float(r) for r in returns],
        successes=[bool(s) for s in successes],
        final_distances=env.final_distances,
    )


@dataclass
class EpisodeResult:
    goal: list[float]
    episode_return: float
    final_distance: float
    success: bool
    commands: list[list[float]]  # what the server published during the episode


@dataclass
class DeployProbe:
    """The benchmark's/test's own node: records joint states, commands and server status."""

    node: Any  # rclpy.node.Node
    executor: Any  # rclpy.executors.SingleThreadedExecutor
    states: list[tuple[float, npt.NDArray[np.float64]]] = field(default_factory=list)
    commands: list[tuple[float, list[float]]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    goal_pub: Any = None

    def spin(self, timeout: float) -> None:
        self.executor.spin_once(timeout_sec=timeout)

    def call(self, srv_type: Any, name: str, request: Any) -> Any:
        return call_service(
            self.node, self.spin, srv_type, name, request, STARTUP_TIMEOUT_S, SERVICE_TIMEOUT_S
        )

    def enable(self, on: bool) -> None:
        from std_srvs.srv import SetBool

        reply = self.call(SetBool, "/policy_server/enable", SetBool.Request(data=on))
        if not reply.success:
            raise RuntimeError(f"/policy_server/enable {on} refused: {reply.message}")

    def reset_sim(self) -> None:
        from std_srvs.srv import Trigger

        reply = self.call(Trigger, "/sim_bridge/reset", Trigger.Request())
        if not reply.success:
            raise RuntimeError(f"/sim_bridge/reset refused: {reply.message}")

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        wait_for(lambda: time.monotonic() >= end, seconds + 1.0, self.spin)

    def fresh_status(self, timeout: float = 5.0) -> dict[str, Any]:
        """A status published after this call (e.g. counts that include the last episode)."""
        n = len(self.statuses)
        if not wait_for(lambda: len(self.statuses) > n, timeout, self.spin):
            raise RuntimeError(f"no /policy_server/status within {timeout} s")
        return self.statuses[-1]

    def server_parameters(self, names: Sequence[str]) -> dict[str, Any]:
        """The running policy_server's values of `names` (what it really uses); None for a
        parameter declared without a value (e.g. `trusted_keys` unset)."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        result: dict[str, Any] = {}
        for name in names:
            # One name per request: rclpy answers a request naming any parameter without a
            # value with no values at all.
            reply = self.call(
                GetParameters, "/policy_server/get_parameters", GetParameters.Request(names=[name])
            )
            value = parameter_value_to_python(reply.values[0]) if reply.values else None
            # Array parameters come back as array.array: plain lists, for JSON.
            plain = value is None or isinstance(value, bool | int | float | str)
            result[name] = value if plain else list(value)  # type: ignore[arg-type]
        return result

    def wait_started(self, deployed: Deployment) -> None:
        """Until the server holds a first valid pose (it has seen the sim's joint states)."""
        ok = wait_for(
            lambda: bool(self.statuses) and bool(self.statuses[-1].get("started")),
            STARTUP_TIMEOUT_S,
            self.spin,
        )
        if not ok or not deployed.running():
            last = self.statuses[-1] if self.statuses else None
            raise RuntimeError(
                f"deployment did not start (last status {last})\n{deployed.output()}"
            )

    def run_episode(self, task: ReachTask, goal: npt.ArrayLike) -> EpisodeResult:
        """One episode towards `goal` from home, scored like the in-process env."""
        from std_msgs.msg import Float64MultiArray

        goal_list = [float(x) for x in np.asarray(goal, dtype=np.float64).reshape(-1)]
        robot = task.robot
        dt, steps = robot.control_period_s, robot.reach.episode_steps
        self.enable(False)
        # publish_when_disabled false: the server brakes to rest before it goes silent
        # (issue 19); a reset before that would be undone by its braking commands.
        seen = len(self.statuses)
        if not wait_for(
            lambda: len(self.statuses) > seen and self.statuses[-1].get("silent", True),
            GOAL_TIMEOUT_S,
            self.spin,
        ):
            raise RuntimeError(f"the server did not come to rest: {self.statuses[-1:]}")
        self.reset_sim()
        self.goal_pub.publish(Float64MultiArray(data=goal_list))

        def goal_taken() -> bool:
            shown = self.statuses[-1].get("goal") if self.statuses else None
            return bool(np.allclose(shown or [0.0] * 3, goal_list, atol=1e-6))

        if not wait_for(goal_taken, GOAL_TIMEOUT_S, self.spin):
            raise RuntimeError(f"goal {goal_list} not taken: {self.statuses[-1:]}")
        self.wait(SETTLE_S)  # the arm settles at home
        first = len(self.commands)
        self.enable(True)
        t0 = time.monotonic()
        self.wait(steps * dt + TAIL_S)
        ret, distance = score_episode(self.states, t0, goal_list, task, steps, dt)
        return EpisodeResult(
            goal=goal_list,
            episode_return=ret,
            final_distance=distance,
            success=distance < robot.reach.success_threshold_m,
            commands=[c for _, c in self.commands[first:]],
        )


def score_episode(
    states: Sequence[tuple[float, npt.NDArray[np.float64]]],
    t0: float,
    goal: Sequence[float],
    task: ReachTask,
    steps: int,
    dt: float,
) -> tuple[float, float]:
    """(return, final fingertip distance [m]) of an episode enabled at monotonic time `t0`:
    the reward at the end of each control period and the distance at the end of the last one,
    each from the joint state nearest in time."""
    if not states:
        raise RuntimeError("no joint states recorded")
    times = np.asarray([t for t, _ in states])

    def nearest(t: float) -> npt.NDArray[np.float64]:
        return states[int(np.argmin(np.abs(times - t)))][1]

    total = sum(
        task.reward(nearest(t0 + (k - 1) * dt), nearest(t0 + k * dt), goal)
        for k in range(1, steps + 1)
    )
    return float(total), task.distance(nearest(t0 + steps * dt), goal)


@contextmanager
def deploy_probe(env: Mapping[str, str], name: str, robot: RobotConfig) -> Iterator[DeployProbe]:
    """A probe node on `env`'s domain subscribed to joint states, commands and the status."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, String

    with probe_node(env, name) as (node, executor):
        p = DeployProbe(node=node, executor=executor)
        stamp: Callable[[], float] = time.monotonic
        node.create_subscription(
            JointState,
            "/joint_states",
            lambda m: p.states.append((stamp(), np.asarray(m.position, dtype=np.float64))),
            100,
        )
        node.create_subscription(
            Float64MultiArray,
            robot.command_topic,
            lambda m: p.commands.append((stamp(), list(m.data))),
            100,
        )
        node.create_subscription(
            String, "/policy_server/status", lambda m: p.statuses.append(json.loads(m.data)), 10
        )
        p.goal_pub = node.create_publisher(Float64MultiArray, "/policy_server/goal", 10)
        yield p
