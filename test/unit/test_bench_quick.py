"""The benchmark harness in quick mode: it must keep working (issue 5)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cgrpo_ros.cli import main as cgrpo_main
from cgrpo_ros.cli.bench import (
    CGRPO_METHODS,
    METHODS,
    ZOO_METHODS,
    RunSpec,
    cgrpo_method_config,
    evaluate_policy,
    frozen_act,
    run_sb3,
    steps_to_fraction,
    train_sb3_zoo,
    zoo_hyperparameters,
    zoo_model_kwargs,
)


def test_steps_to_90pct_is_the_first_crossing() -> None:
    curve = [(100, 10.0), (200, 95.0), (300, 80.0), (400, 99.0)]
    assert steps_to_fraction(curve, 100.0) == 200
    assert steps_to_fraction(curve, 1000.0) is None
    assert steps_to_fraction(curve, None) is None


def test_quick_bench_writes_one_file_per_run_and_resumes(tmp_path: Path) -> None:
    out, docs = tmp_path / "out", tmp_path / "docs"
    docs.mkdir()
    methods = ["cgrpo-simple", "ppo", "ppo-tuned", "trpo"]
    argv = ["bench", "--quick", "--methods", *methods, "--seeds", "0", "--out", str(out)]
    assert cgrpo_main(argv) == 0
    files = sorted(out.glob("*/*/seed*.json"))
    assert [f.parent.name for f in files] == methods
    for path in files:
        result = json.loads(path.read_text())
        assert result["env_steps"] == result["budget_steps"] == 4096  # budgets are equal
        assert len(result["perturbed_returns"]) == 4 and result["curve"]
        if result["method"] in ("ppo-tuned", "trpo"):  # the quick entry, not the zoo's
            assert result["hyperparameters"]["zoo_entry"] is None
            assert result["hyperparameters"]["normalize"] is True
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert cgrpo_main(argv) == 0  # finished runs are skipped, not repeated
    assert [f.stat().st_mtime_ns for f in files] == mtimes

    assert cgrpo_main(["bench", "--out", str(out), "--report", str(docs)]) == 0
    rows = json.loads((docs / "results.json").read_text())
    required = {"method", "task", "seed", "budget_steps", "final_return", "steps_to_90pct",
                "wall_s", "perturbed_ratio"}  # fmt: skip
    assert len(rows) == 4 and all(required <= set(row) for row in rows)
    assert (docs / "figures" / "learning_curves.png").exists()
    assert (docs / "figures" / "per_policy_curves.png").exists()  # the paper's Figure 1


def test_bench_refuses_unknown_methods(tmp_path: Path) -> None:
    assert cgrpo_main(["bench", "--methods", "td3", "--out", str(tmp_path)]) == 2
    assert RunSpec("ppo", "Hopper-v5", 1, 300_000).path(tmp_path).name == "seed1-300000.json"


def test_zoo_hyperparameters_are_the_zoo_values() -> None:
    """config/baselines/sb3_zoo.yaml against rl-baselines3-zoo's ppo.yml (HalfCheetah-v4) and
    trpo.yml (HalfCheetah-v3)."""
    from torch import nn

    ppo = zoo_hyperparameters("ppo-tuned", "HalfCheetah-v5")
    assert ppo["zoo_entry"] == "HalfCheetah-v4" and ppo["normalize"] is True
    assert (ppo["n_envs"], ppo["n_steps"], ppo["batch_size"], ppo["n_epochs"]) == (1, 512, 64, 20)
    assert (ppo["gamma"], ppo["gae_lambda"], ppo["clip_range"]) == (0.98, 0.92, 0.1)
    assert ppo["learning_rate"] == 2.0633e-05 and ppo["ent_coef"] == 0.000401762
    assert (ppo["max_grad_norm"], ppo["vf_coef"]) == (0.8, 0.58096)
    kwargs = zoo_model_kwargs(ppo)
    assert not {"zoo_entry", "normalize", "n_envs", "n_timesteps", "source"} & set(kwargs)
    assert kwargs["policy_kwargs"] == {
        "log_std_init": -2, "ortho_init": False, "activation_fn": nn.ReLU,
        "net_arch": {"pi": [256, 256], "vf": [256, 256]},
    }  # fmt: skip
    assert "208b6fdf3a9aa24de44b2e068c6e5f6a07d97fcc" in ppo["source"]
    assert zoo_hyperparameters("ppo-tuned", "Ant-v5").keys() == {
        "zoo_entry", "normalize", "n_timesteps", "source"}  # fmt: skip
    trpo = zoo_hyperparameters("trpo", "HalfCheetah-v5")
    assert (trpo["n_envs"], trpo["n_steps"], trpo["batch_size"]) == (2, 1024, 128)
    assert trpo["learning_rate"] == 1e-3 and trpo["target_kl"] == 0.04
    assert (trpo["cg_max_steps"], trpo["cg_damping"], trpo["n_critic_updates"]) == (25, 0.1, 20)
    assert "target_kl" not in zoo_hyperparameters("trpo", "Hopper-v5")


def test_tuned_method_without_an_entry_for_the_task_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=r"'trpo'.*'Swimmer-v5'.*Ant-v5, HalfCheetah-v5"):
        zoo_hyperparameters("trpo", "Swimmer-v5")
    argv = ["bench", "--methods", "ppo", "ppo-tuned", "--tasks", "Swimmer-v5", "--out",
            str(tmp_path)]  # fmt: skip
    assert cgrpo_main(argv) == 2  # before any run starts
    assert "'ppo-tuned' has no hyperparameters for task 'Swimmer-v5'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="InvertedPendulum-v5"):  # its entry is quick-only
        zoo_hyperparameters("ppo-tuned", "InvertedPendulum-v5")


def test_evaluation_normalises_with_frozen_statistics() -> None:
    spec = RunSpec("ppo-tuned", "InvertedPendulum-v5", 0, 512, quick=True)
    model, vec_normalize, curve = train_sb3_zoo(spec)
    assert model.num_timesteps == 512 and curve
    stats = [vec_normalize.obs_rms.mean.copy(), vec_normalize.obs_rms.var.copy(),
             vec_normalize.ret_rms.var.copy()]  # fmt: skip
    count = vec_normalize.obs_rms.count
    act = frozen_act(model, vec_normalize)
    evaluate_policy(act, spec.task, episodes=2, seed=10_000)
    assert vec_normalize.training is False and vec_normalize.norm_reward is False
    assert vec_normalize.obs_rms.count == count
    after = [vec_normalize.obs_rms.mean, vec_normalize.obs_rms.var, vec_normalize.ret_rms.var]
    for before, now in zip(stats, after, strict=True):
        np.testing.assert_array_equal(before, now)
    obs = np.array([0.05, -0.02, 0.3, -0.1])  # a raw observation
    rms = vec_normalize.obs_rms
    expected = np.clip((obs - rms.mean) / np.sqrt(rms.var + vec_normalize.epsilon), -10, 10)
    np.testing.assert_array_equal(act(obs), model.predict(expected, deterministic=True)[0])


@pytest.mark.parametrize("method", sorted(CGRPO_METHODS))
def test_every_cgrpo_method_builds_a_valid_configuration(method: str) -> None:
    from cgrpo_ros.core.config import CGRPOConfig

    variant, overrides = cgrpo_method_config(method)
    config = CGRPOConfig.for_variant(variant, **overrides)  # type: ignore[arg-type]
    if method == "cgrpo-group":
        assert config.group_size == 4 and config.group_horizon == 64
    if method in ("cgrpo-group", "cgrpo-lownoise"):
        assert config.init_log_std == -2.0
    assert config.value_baseline == method.startswith("cgrpo-value")
    if method == "cgrpo-value-midnoise":  # cgrpo-value with init_log_std -1 instead of -2
        value_variant, value_overrides = cgrpo_method_config("cgrpo-value")
        value = CGRPOConfig.for_variant(value_variant, **value_overrides).to_dict()  # type: ignore[arg-type]
        changed = {k for k, v in config.to_dict().items() if value[k] != v}
        assert changed == {"init_log_std"} and config.init_log_std == -1.0
    if method.startswith("cgrpo-full-no-"):  # each ablation switches exactly one term off
        full = CGRPOConfig.for_variant("full").to_dict()
        changed = {k for k, v in config.to_dict().items() if full[k] != v}
        assert changed == set(overrides), changed


def test_unknown_cgrpo_method_config_is_refused() -> None:
    with pytest.raises(ValueError, match="'cgrpo-turbo' is not a CGRPO method"):
        cgrpo_method_config("cgrpo-turbo")


def test_sb3_runs_leave_no_folder_in_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SB3's default logger makes /tmp/SB3-<date> on every learn() and never removes it.
    import tempfile

    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run_sb3(RunSpec("ppo", "InvertedPendulum-v5", 0, 64, quick=True))
    train_sb3_zoo(RunSpec("trpo", "InvertedPendulum-v5", 0, 64, quick=True))
    assert sorted(p.name for p in tmp_path.glob("SB3-*")) == []


def _flag_values(tokens: list[str], flag: str) -> list[str]:
    """The values after `flag` up to the next --option, in a tokenised command line."""
    start = tokens.index(flag) + 1
    values = []
    for token in tokens[start:]:
        if token.startswith("--"):
            break
        values.append(token.strip('"'))
    return values


def test_the_sweep_script_names_only_known_methods_and_tasks() -> None:
    # A typo there would surface hours into a resumable sweep, not here.
    script = (Path(__file__).resolve().parents[2] / "benchmarks" / "issue13_sweep.sh").read_text()
    tasks_line = re.search(r"^tasks=\((.*)\)$", script, re.MULTILINE)
    assert tasks_line is not None
    variables = {"${tasks[@]}": tasks_line.group(1).split(), "$task": tasks_line.group(1).split()}
    runs = [line.split() for line in re.findall(r"\$bench ([^\n]+)", script.replace("\\\n", " "))]
    assert len(runs) > 10
    for tokens in runs:
        methods = _flag_values(tokens, "--methods")
        tasks = [t for task in _flag_values(tokens, "--tasks") for t in variables.get(task, [task])]
        assert methods and tasks, tokens
        for method in methods:
            assert method in METHODS, f"{method!r} in {tokens}"
        for task in tasks:
            assert task.endswith("-v5"), f"{task!r} in {tokens}"
            for method in set(methods) & set(ZOO_METHODS):
                zoo_hyperparameters(method, task)  # raises if the zoo file has no entry
