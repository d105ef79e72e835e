"""`cgrpo bench`: CGRPO-Full, CGRPO-Simple and stable-baselines3 PPO/SAC/TRPO on equal terms.

Same tasks, step budgets and seeds for every method; every environment step a method
simulates while training counts against its budget (CGRPO's N policies share it). Each run
writes one JSON file, so an interrupted sweep resumes and `--jobs 2` runs two at once.
Metrics follow the paper's section 6.2 (docs/results.md explains each).

Baselines: `ppo` and `sac` run SB3's default hyperparameters; `ppo-tuned` (SB3 PPO) and `trpo`
(sb3-contrib TRPO) run rl-baselines3-zoo's per-task hyperparameters from
config/baselines/sb3_zoo.yaml, with VecNormalize during training and its statistics frozen for
evaluation, as the zoo does.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cgrpo_ros.cli.bench_report import ROW_KEYS, load_results, markdown_table, write_report
from cgrpo_ros.core.run_shape import SHAPE_FIELDS, RunShape

# CGRPO methods: the variant and its overrides, inline or as a file under config/ (one
# configuration for every task; `cgrpo train --config <file>` runs the same). The
# `cgrpo-full-no-*` rows are the term-by-term ablation of Full (docs/results.md).
CGRPO_METHODS: dict[str, tuple[str, str | dict[str, Any]]] = {
    "cgrpo-full": ("full", {}),
    "cgrpo-simple": ("simple", {}),
    "cgrpo-group": ("full", "cgrpo/group.yaml"),
    "cgrpo-lownoise": ("full", "cgrpo/lownoise.yaml"),
    "cgrpo-value": ("full", "cgrpo/value.yaml"),
    "cgrpo-value-midnoise": ("full", "cgrpo/value_midnoise.yaml"),
    "cgrpo-full-no-adaptive-clip": ("full", {"adaptive_clip": False}),
    "cgrpo-full-no-smoothness": ("full", {"smoothness_coef": 0.0}),
    "cgrpo-full-no-diversity": ("full", {"diversity_coef": 0.0}),
    "cgrpo-full-no-reference": ("full", {"use_reference": False, "reference_coef": 0.0}),
}
METHODS = (*CGRPO_METHODS, "ppo", "ppo-tuned", "sac", "trpo")
ZOO_METHODS = ("ppo-tuned", "trpo")  # per-task hyperparameters from config/baselines/
ZOO_FILE = Path("baselines") / "sb3_zoo.yaml"
# Zoo experiment keys that are not constructor arguments of the algorithm.
ZOO_EXPERIMENT_KEYS = ("zoo_entry", "normalize", "n_envs", "n_timesteps")
ACTIVATIONS = ("relu", "tanh", "elu", "leaky_relu")  # policy_kwargs.activation_fn names
# 90 % of these is the "expert level" of the sample-efficiency metric: D4RL's REF_MAX_SCORE
# (Fu et al. 2020, d4rl/infos.py), the returns of its SAC expert policies on the v2 tasks.
REFERENCE_RETURNS = {
    "HalfCheetah-v5": 12135.0,
    "Hopper-v5": 3234.3,
    "Walker2d-v5": 4592.3,
    "Ant-v5": 3879.7,
    "InvertedPendulum-v5": 1000.0,  # the task's maximum (quick mode)
}
PERTURBATIONS = {"mass x0.8": (0.8, 1.0), "mass x1.2": (1.2, 1.0),
                 "friction x0.7": (1.0, 0.7), "friction x1.3": (1.0, 1.3)}  # fmt: skip
# The paper's set-up (N = K = 2, T = 2048): the run shape's defaults (core/run_shape.py).
CGRPO_POLICIES = SHAPE_FIELDS["num_policies"].default
CGRPO_STEPS = SHAPE_FIELDS["steps_per_iteration"].default
# CGRPO settings that differ from the defaults per task, the ones this project recommends and
# tests; none at present (Arm7Reach needed some before its fingertip-step actions). `ppo` and
# `sac` always run SB3's defaults; `ppo-tuned` and `trpo` the zoo's (config/baselines/).
CGRPO_TASK_OVERRIDES: dict[str, dict[str, Any]] = {}


@dataclass
class RunSpec:
    method: str
    task: str
    seed: int
    budget_steps: int
    eval_episodes: int = 100
    perturbed_episodes: int = 10
    cgrpo_steps_per_iteration: int = CGRPO_STEPS
    quick: bool = False  # ppo-tuned/trpo: the file's `quick` entries (not from the zoo)

    def path(self, out: Path) -> Path:
        # "cgrpo_ros/Arm7Reach-v0" must stay one directory level (load_results globs */*/).
        task_dir = self.task.replace("/", "_")
        return out / task_dir / self.method / f"seed{self.seed}-{self.budget_steps}.json"


@dataclass
class RunResult:
    method: str
    task: str
    seed: int
    budget_steps: int
    env_steps: int
    final_return: float  # mean over eval_episodes of the final (deployed) policy
    final_return_std: float
    steps_to_90pct: int | None  # first curve point >= 0.9 x reference, None if never
    reference_return: float | None
    wall_s: float
    env_steps_per_s: float
    perturbed_returns: dict[str, float]
    perturbed_ratio: float  # mean of perturbed / unperturbed return
    curve: list[tuple[int, float]]  # (env steps, training return of the deployed policy)
    per_policy_curves: list[list[tuple[int, float]]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    # Fraction of the eval_episodes that ended in info["is_success"]; None when the task
    # reports no success (the locomotion tasks).
    success_rate: float | None = None
    # ppo-tuned/trpo: the entry of config/baselines/sb3_zoo.yaml the run used, and its source.
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def make_perturbed_env(task: str, mass_scale: float, friction_scale: float) -> Any:
    from cgrpo_ros.tasks import make_env

    env = make_env(task)
    # gymnasium's MuJoCo tasks keep the model on the env; the arm7 reach task on its ArmSim.
    unwrapped: Any = env.unwrapped
    model = unwrapped.model if hasattr(unwrapped, "model") else unwrapped.sim.model
    model.body_mass[:] *= mass_scale
    model.geom_friction[:, 0] *= friction_scale  # sliding friction
    return env


def evaluate_policy(act: Any, task: str, episodes: int, seed: int) -> dict[str, Any]:
    from cgrpo_ros.core.rollout import evaluate, evaluate_with_success

    base, successes = evaluate_with_success(make_perturbed_env(task, 1.0, 1.0), act, episodes, seed)
    perturbed = {}
    for name, (mass, friction) in PERTURBATIONS.items():
        env = make_perturbed_env(task, mass, friction)
        perturbed[name] = float(np.mean(evaluate(env, act, max(1, episodes // 10), seed)))
    return {"base": base, "perturbed": perturbed, "successes": successes}


def steps_to_fraction(curve: list[tuple[int, float]], reference: float | None) -> int | None:
    if reference is None:
        return None
    for steps, value in curve:
        if value >= 0.9 * reference:
            return steps
    return None


def run_cgrpo(spec: RunSpec, out: Path) -> tuple[Any, list[Any], list[list[Any]], int]:
    from cgrpo_ros.core.config import CGRPOConfig
    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from cgrpo_ros.run_logging import deployed_policy_id, read_return_curves
    from cgrpo_ros.session import train_single_process

    variant, overrides = cgrpo_method_config(spec.method)
    per_iteration = CGRPO_POLICIES * spec.cgrpo_steps_per_iteration
    iterations = max(1, spec.budget_steps // per_iteration)
    run_dir = spec.path(out).with_suffix("")
    if run_dir.exists():  # a run that died half-way: start it again from scratch
        import shutil

        shutil.rmtree(run_dir)
    shape = RunShape(
        num_policies=CGRPO_POLICIES, num_groups=CGRPO_POLICIES, iterations=iterations,
        steps_per_iteration=spec.cgrpo_steps_per_iteration, seed=spec.seed,
    )  # fmt: skip
    config = CGRPOConfig.for_run(
        variant,  # type: ignore[arg-type]
        shape,
        {**overrides, **CGRPO_TASK_OVERRIDES.get(spec.task, {})},
    )
    summary = train_single_process(
        env_id=spec.task, config=config, iterations=shape.iterations,
        steps_per_iteration=shape.steps_per_iteration, run_dir=run_dir,
        checkpoint_every=max(1, iterations),
    )  # fmt: skip
    curves = read_return_curves(run_dir / "metrics.csv")
    per_policy = [curves.get(i, []) for i in range(CGRPO_POLICIES)]
    chosen = deployed_policy_id(summary["final_return_per_policy"])
    policy = OnnxPolicy((run_dir / f"policy_{chosen}.onnx").read_bytes())
    by_step: dict[int, float] = {}
    for curve in per_policy:
        for steps, value in curve:
            by_step[steps] = max(by_step.get(steps, -math.inf), value)
    curve = sorted(by_step.items())
    return policy.deterministic_action, curve, per_policy, int(summary["env_steps"])


def silent_sb3_logger() -> Any:
    """A logger with no outputs for an SB3 model. Without one, every `learn()` at verbose=0
    makes an empty /tmp/SB3-<date> folder (SB3's `configure(None, [""])`) and leaves it."""
    from stable_baselines3.common.logger import Logger

    return Logger(folder=None, output_formats=[])


def run_sb3(spec: RunSpec) -> tuple[Any, list[Any], int]:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor

    from cgrpo_ros.tasks import make_env

    env = Monitor(make_env(spec.task))
    algo_class = PPO if spec.method == "ppo" else SAC
    model = algo_class("MlpPolicy", env, seed=spec.seed, device="cpu", verbose=0)
    curve: list[tuple[int, float]] = []

    class RecordReturns(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    recent = [*env.get_episode_rewards()[-10:]]
                    curve.append((self.num_timesteps, float(np.mean(recent))))
            return True

    model.set_logger(silent_sb3_logger())
    model.learn(total_timesteps=spec.budget_steps, callback=RecordReturns())

    def act(obs: Any) -> Any:
        return model.predict(obs, deterministic=True)[0]

    return act, curve, int(model.num_timesteps)


def find_config_file(relative: Path) -> Path:
    """config/<relative> in the source tree, an ament install or a pip install."""
    from cgrpo_ros.share import find_share_file

    return find_share_file(Path("config") / relative)


def find_zoo_file() -> Path:
    """config/baselines/sb3_zoo.yaml."""
    return find_config_file(ZOO_FILE)


def cgrpo_method_config(method: str) -> tuple[str, dict[str, Any]]:
    """(variant, CGRPOConfig overrides) of a `cgrpo-*` method (CGRPO_METHODS)."""
    from cgrpo_ros.core.config import load_config_file

    if method not in CGRPO_METHODS:
        raise ValueError(f"method {method!r} is not a CGRPO method ({', '.join(CGRPO_METHODS)})")
    variant, source = CGRPO_METHODS[method]
    if isinstance(source, str):  # a configuration file of config/cgrpo/, one for every task
        return variant, load_config_file(find_config_file(Path(source)))
    return variant, dict(source)


def zoo_hyperparameters(method: str, task: str, quick: bool = False) -> dict[str, Any]:
    """The entry of config/baselines/sb3_zoo.yaml for `method` on `task`, as written there
    (policy_kwargs.activation_fn still a name; see `zoo_model_kwargs`), plus its `source`.

    quick=True reads the file's `quick` entries (tiny settings for `--quick`, not the zoo's).
    """
    import yaml

    if method not in ZOO_METHODS:
        raise ValueError(f"method {method!r} has no zoo hyperparameters (only {ZOO_METHODS})")
    path = find_zoo_file()
    data = yaml.safe_load(path.read_text())
    section = "quick" if quick else "tasks"
    entries = data[method].get(section) or {}
    if task not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ValueError(
            f"method {method!r} has no hyperparameters for task {task!r} in {path} "
            f"({section}); tasks with an entry: {known}"
        )
    entry = dict(entries[task])
    activation = entry.get("policy_kwargs", {}).get("activation_fn")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(
            f"{path}: {method} {task} policy_kwargs.activation_fn={activation!r} is not one of "
            f"{', '.join(ACTIVATIONS)}"
        )
    return {**entry, "source": data[method]["source"]}


def zoo_model_kwargs(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Constructor keyword arguments of the algorithm: the entry without the zoo's experiment
    keys, with policy_kwargs.activation_fn mapped from its name to the torch.nn class."""
    from torch import nn

    classes = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}
    skip = (*ZOO_EXPERIMENT_KEYS, "source")
    kwargs = {k: v for k, v in hyperparameters.items() if k not in skip}
    if "policy_kwargs" in kwargs:
        policy_kwargs = dict(kwargs["policy_kwargs"])
        if "activation_fn" in policy_kwargs:
            policy_kwargs["activation_fn"] = classes[policy_kwargs["activation_fn"]]
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


def train_sb3_zoo(spec: RunSpec) -> tuple[Any, Any, list[tuple[int, float]]]:
    """Train ppo-tuned or trpo with the zoo's settings: `n_envs` Monitor-wrapped copies of the
    task in a DummyVecEnv, under VecNormalize (observations and rewards) when the entry says
    `normalize`. Returns the model, its VecNormalize (None without normalize) and the curve:
    (env steps, mean of the last 10 finished training episodes' raw returns, all envs)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from cgrpo_ros.tasks import make_env

    hyperparameters = zoo_hyperparameters(spec.method, spec.task, spec.quick)
    n_envs = int(hyperparameters.get("n_envs", 1))
    venv: Any = DummyVecEnv([lambda: Monitor(make_env(spec.task)) for _ in range(n_envs)])
    vec_normalize = None
    if hyperparameters.get("normalize", False):
        # The zoo passes the entry's gamma to VecNormalize (its reward-return discount).
        venv = vec_normalize = VecNormalize(venv, gamma=hyperparameters.get("gamma", 0.99))
    if spec.method == "trpo":
        from sb3_contrib import TRPO

        algo_class: Any = TRPO
    else:
        algo_class = PPO
    model = algo_class(
        "MlpPolicy", venv, seed=spec.seed, device="cpu", verbose=0,
        **zoo_model_kwargs(hyperparameters),
    )  # fmt: skip
    returns: list[float] = []
    curve: list[tuple[int, float]] = []

    class RecordReturns(BaseCallback):
        def _on_step(self) -> bool:
            # Monitor sits below VecNormalize: info["episode"]["r"] is the raw return.
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    returns.append(float(info["episode"]["r"]))
                    curve.append((self.num_timesteps, float(np.mean(returns[-10:]))))
            return True

    model.set_logger(silent_sb3_logger())
    model.learn(total_timesteps=spec.budget_steps, callback=RecordReturns())
    return model, vec_normalize, curve


def frozen_act(model: Any, vec_normalize: Any) -> Any:
    """Deterministic action for one raw observation, normalised with the training statistics
    frozen (no update of obs_rms/ret_rms, no reward normalisation) as the zoo evaluates."""
    if vec_normalize is None:
        return lambda obs: model.predict(obs, deterministic=True)[0]
    vec_normalize.training = False
    vec_normalize.norm_reward = False
    return lambda obs: model.predict(vec_normalize.normalize_obs(obs), deterministic=True)[0]


def run_one(spec: RunSpec, out: Path) -> Path:
    """Train one method on one task and seed, evaluate it, write its JSON file."""
    import torch

    from cgrpo_ros.run_logging import versions

    path = spec.path(out)
    if path.exists():
        return path
    torch.set_num_threads(1)
    started = time.perf_counter()
    per_policy: list[list[Any]] = []
    hyperparameters: dict[str, Any] = {}
    if spec.method.startswith("cgrpo-"):
        act, curve, per_policy, env_steps = run_cgrpo(spec, out)
    elif spec.method in ("ppo", "sac"):
        act, curve, env_steps = run_sb3(spec)
    elif spec.method in ZOO_METHODS:
        hyperparameters = zoo_hyperparameters(spec.method, spec.task, spec.quick)
        model, vec_normalize, curve = train_sb3_zoo(spec)
        act, env_steps = frozen_act(model, vec_normalize), int(model.num_timesteps)
    else:
        raise ValueError(f"method={spec.method!r} is not one of {METHODS}")
    wall_s = time.perf_counter() - started
    evaluation = evaluate_policy(act, spec.task, spec.eval_episodes, seed=10_000 + spec.seed)
    base = float(np.mean(evaluation["base"]))
    ratios = [v / base for v in evaluation["perturbed"].values()] if base != 0 else [math.nan]
    reference = REFERENCE_RETURNS.get(spec.task)
    result = RunResult(
        method=spec.method, task=spec.task, seed=spec.seed, budget_steps=spec.budget_steps,
        env_steps=env_steps, final_return=base,
        final_return_std=float(np.std(evaluation["base"])),
        steps_to_90pct=steps_to_fraction(curve, reference), reference_return=reference,
        wall_s=round(wall_s, 1), env_steps_per_s=round(env_steps / wall_s, 1),
        perturbed_returns=evaluation["perturbed"], perturbed_ratio=float(np.mean(ratios)),
        curve=curve, per_policy_curves=per_policy, versions=versions(),
        success_rate=(
            None if evaluation["successes"] is None else float(np.mean(evaluation["successes"]))
        ),
        hyperparameters=hyperparameters,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1))
    tmp.replace(path)  # a result file is complete or absent
    return path


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="CGRPO vs stable-baselines3 on equal budgets (resumable sweep)"
    )
    parser.add_argument("--methods", nargs="+", default=["cgrpo-full", "cgrpo-simple", "ppo"])
    parser.add_argument("--tasks", nargs="+", default=["HalfCheetah-v5"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=1_000_000, help="env steps per run")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one core each)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare"))
    parser.add_argument(
        "--quick", action="store_true", help="tiny budgets on InvertedPendulum-v5 (tests)"
    )
    parser.add_argument(
        "--report", type=Path, default=None, metavar="DOCS_DIR",
        help="only collect the finished runs into DOCS_DIR/results.json and figures",
    )  # fmt: skip
    parser.set_defaults(func=cmd_bench)
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    for method in args.methods:
        if method not in METHODS:
            raise ValueError(f"--methods: {method!r} is not one of {', '.join(METHODS)}")
    if not 1 <= args.jobs <= 64:
        raise ValueError(f"--jobs={args.jobs} is outside the allowed range [1, 64]")
    if args.report is not None:
        print(markdown_table(write_report(args.out, args.report)))
        return 0
    steps = CGRPO_STEPS
    if args.quick:
        args.tasks, args.budget, args.eval_episodes = ["InvertedPendulum-v5"], 4096, 3
        steps = 512
    perturbed_episodes = max(1, args.eval_episodes // 10)
    specs = [
        RunSpec(m, t, s, args.budget, args.eval_episodes, perturbed_episodes, steps, args.quick)
        for t in args.tasks
        for s in args.seeds
        for m in args.methods
    ]
    for spec in specs:  # a task without zoo hyperparameters fails now, not after other runs
        if spec.method in ZOO_METHODS:
            zoo_hyperparameters(spec.method, spec.task, spec.quick)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for path in pool.map(run_one, specs, [args.out] * len(specs)):
            print(f"done: {path}", flush=True)
    rows = load_results(args.out)
    print(json.dumps([{k: r.get(k) for k in ROW_KEYS} for r in rows], indent=1))
    return 0
