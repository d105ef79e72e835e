"""Config validation, determinism, checkpoint round trip and ONNX parity of the core."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.cgrpo import CGRPO
from cgrpo_ros.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from cgrpo_ros.core.config import CGRPOConfig, ConfigError
from cgrpo_ros.core.onnx_export import export_policy_onnx
from cgrpo_ros.core.policy_artifact import OnnxPolicy, PolicyArtifactError, PolicyMetadata

OBS_DIM, ACT_DIM, STEPS = 5, 2, 96


def fake_batches(seed: int, n: int = 3) -> list[RolloutBatch]:
    """Synthetic on-policy-shaped data: rewards depend on the action, episodes of 40 steps."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        obs = rng.normal(size=(STEPS, OBS_DIM)).astype(np.float32)
        actions = rng.normal(size=(STEPS, ACT_DIM)).astype(np.float32)
        rewards = (-np.square(actions - obs[:, :ACT_DIM]).sum(1)).astype(np.float32)
        dones = np.zeros(STEPS, dtype=bool)
        dones[39::40] = True
        batches.append(
            RolloutBatch(
                obs, actions, rewards, dones, np.zeros(STEPS, dtype=bool),
                np.array([-80.0, -75.0]), np.array([40, 40]),
            )
        )  # fmt: skip
    return batches


def small_config(**overrides: object) -> CGRPOConfig:
    values: dict[str, object] = dict(
        num_policies=3, num_groups=2, hidden_sizes=(16,), epochs=2, minibatch_size=32, seed=7
    )
    values.update(overrides)
    variant = values.pop("variant", "full")
    return CGRPOConfig.for_variant(variant, **values)  # type: ignore[arg-type]


def params_of(algo: CGRPO) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for pol in algo.policies for p in pol.parameters()]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("num_groups", 4, "num_groups=4 exceeds num_policies=3"),
        ("gamma", 1.5, "gamma=1.5 is outside the allowed range (0.0, 1.0]"),
        ("clip_epsilon_base", 0.0, "clip_epsilon_base=0.0"),
        ("learning_rate", float("nan"), "learning_rate=nan is not a finite number"),
        ("epochs", 0, "epochs=0 is outside the allowed range [1, 1000]"),
        ("variant", "medium", "variant='medium' is not one of"),
        ("dbscan_eps", -1.0, "dbscan_eps=-1.0"),
        ("reference_top_k", 9, "reference_top_k=9"),
        ("hidden_sizes", (0,), "hidden_sizes[]=0"),
        ("seed", True, "seed=True must be an integer"),
    ],
)
def test_config_errors_name_field_and_value(field: str, value: object, fragment: str) -> None:
    values = dict(num_policies=3, num_groups=2)
    values[field] = value  # type: ignore[assignment]
    with pytest.raises(ConfigError) as info:
        CGRPOConfig(**values)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_config_unknown_keys_and_variants() -> None:
    with pytest.raises(ConfigError, match="unknown configuration keys: \\['lerning_rate'\\]"):
        CGRPOConfig.from_dict({"lerning_rate": 0.1})
    simple = CGRPOConfig.for_variant("simple")
    assert not simple.adaptive_clip and not simple.use_reference
    assert simple.smoothness_coef == 0.0 and simple.diversity_coef == 0.0
    full = CGRPOConfig.for_variant("full", smoothness_coef=0.0)  # term-by-term ablation
    assert full.adaptive_clip and full.smoothness_coef == 0.0
    assert CGRPOConfig.from_dict(full.to_dict()) == full
    assert full.config_hash() != simple.config_hash()


@pytest.mark.parametrize("variant", ["full", "simple"])
def test_update_is_deterministic(variant: str) -> None:
    results = []
    for _ in range(2):
        algo = CGRPO(small_config(variant=variant), OBS_DIM, ACT_DIM)
        metrics = [algo.update(fake_batches(s)) for s in (1, 2)]
        results.append((params_of(algo), [m.groups for m in metrics]))
    for a, b in zip(results[0][0], results[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert results[0][1] == results[1][1]


def test_update_changes_policies_and_reports_metrics() -> None:
    algo = CGRPO(small_config(), OBS_DIM, ACT_DIM)
    before = params_of(algo)
    metrics = algo.update(fake_batches(1))
    assert algo.iteration == metrics.iteration == 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, params_of(algo), strict=True))
    assert len(metrics.policies) == 3 and len(set(metrics.groups)) <= 2
    assert all(0.2 <= p.clip_epsilon <= 0.5 for p in metrics.policies)
    assert metrics.reference_members == [
        max(range(3), key=lambda i: (metrics.policies[i].mean_reward, -i))
    ]
    with pytest.raises(ValueError, match="one batch per policy: got 2"):
        algo.update(fake_batches(1, n=2))


def test_checkpoint_resume_gives_the_same_next_update(tmp_path: Path) -> None:
    uninterrupted = CGRPO(small_config(), OBS_DIM, ACT_DIM)
    uninterrupted.update(fake_batches(1))
    save_checkpoint(tmp_path / "a.ckpt", uninterrupted, {"env_steps": 288})
    uninterrupted.update(fake_batches(2))

    restored, extra = load_checkpoint(tmp_path / "a.ckpt")
    assert extra == {"env_steps": 288} and restored.iteration == 1
    restored.update(fake_batches(2))
    for a, b in zip(params_of(uninterrupted), params_of(restored), strict=True):
        np.testing.assert_array_equal(a, b)
    for p, q in zip(uninterrupted.policies, restored.policies, strict=True):
        assert torch.equal(p.normalizer.mean, q.normalizer.mean)


def test_checkpoint_rejects_corruption_and_foreign_files(tmp_path: Path) -> None:
    algo = CGRPO(small_config(), OBS_DIM, ACT_DIM)
    path = tmp_path / "c.ckpt"
    save_checkpoint(path, algo)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt: sha256"):
        read_checkpoint(path)
    path.write_bytes(b"PK\x03\x04 not ours, a zip file of someone else's" + bytes(40))
    with pytest.raises(CheckpointError, match="not a cgrpo checkpoint"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(tmp_path / "missing.ckpt")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def metadata(**overrides: object) -> PolicyMetadata:
    values: dict[str, object] = dict(
        policy_id=1, policy_version=4, obs_dim=OBS_DIM, act_dim=ACT_DIM,
        obs_names=[f"obs/{i}" for i in range(OBS_DIM)], action_names=["a", "b"],
        action_low=[-1.0, -2.0], action_high=[1.0, 2.0], task="Test-v0", config_hash="abc",
    )  # fmt: skip
    values.update(overrides)
    return PolicyMetadata(**values)  # type: ignore[arg-type]


def test_onnx_parity_and_metadata_round_trip() -> None:
    algo = CGRPO(small_config(), OBS_DIM, ACT_DIM)
    algo.update(fake_batches(1))  # moves the normaliser away from the identity
    policy = algo.policies[1]
    runner = OnnxPolicy(export_policy_onnx(policy, metadata()))
    obs = np.random.default_rng(0).normal(0, 5, (256, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        expected = policy(torch.as_tensor(obs)).numpy()
    assert np.max(np.abs(runner.action_mean(obs) - expected)) <= 1e-5
    np.testing.assert_allclose(runner.log_std, policy.log_std.detach().numpy(), atol=1e-7)
    assert runner.metadata == metadata()
    single = runner.deterministic_action(obs[0])
    assert single.shape == (ACT_DIM,)
    assert np.all(single >= [-1, -2]) and np.all(single <= [1, 2])


def test_sampling_one_observation_equals_the_batched_formula() -> None:
    """The per-step fast path of OnnxPolicy.sample (issue 14) gives the same numbers and
    draws the same noise as mean + exp(log_std) * N(0, I) from action_mean."""
    algo = CGRPO(small_config(), OBS_DIM, ACT_DIM)
    algo.update(fake_batches(1))
    runner = OnnxPolicy(export_policy_onnx(algo.policies[0], metadata()))
    obs = np.random.default_rng(1).normal(0, 3, (20, OBS_DIM)).astype(np.float32)
    fast, formula = np.random.default_rng(7), np.random.default_rng(7)
    for row in obs:
        expected = runner.action_mean(row[None])[0] + np.exp(runner.log_std) * (
            formula.standard_normal(ACT_DIM).astype(np.float32)
        )
        np.testing.assert_array_equal(runner.sample(row, fast), expected.astype(np.float32))
    batch = runner.sample(obs, fast)  # the batched path still works and has the batch shape
    assert batch.shape == (20, ACT_DIM) and batch.dtype == np.float32


def test_clip_grad_norms_equals_torch_per_policy() -> None:
    """clip_grad_norms (one foreach pass for all policies) is clip_grad_norm_ per policy."""
    from cgrpo_ros.core.cgrpo import clip_grad_norms

    torch.manual_seed(0)
    ours, torchs = CGRPO(small_config(), OBS_DIM, ACT_DIM), CGRPO(small_config(), OBS_DIM, ACT_DIM)
    scales = [0.01] + [10.0] * (len(ours.policies) - 1)
    for scale, a, b in zip(scales, ours.policies, torchs.policies, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            p.grad = torch.randn_like(p) * scale
            q.grad = p.grad.clone()
    ours.policies[0].log_std.grad = None  # a policy whose log_std got no gradient
    torchs.policies[0].log_std.grad = None
    clip_grad_norms(ours.policies, 0.5)
    for policy in torchs.policies:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
    for a, b in zip(ours.policies, torchs.policies, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert (p.grad is None) == (q.grad is None)
            if p.grad is not None:
                assert torch.equal(p.grad, q.grad)
    norm = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in ours.policies[1].parameters()])  # type: ignore[union-attr]
    )
    assert float(norm) == pytest.approx(0.5, rel=1e-4)  # the large gradient was clipped


def test_onnx_artifact_errors() -> None:
    algo = CGRPO(small_config(), OBS_DIM, ACT_DIM)
    with pytest.raises(PolicyArtifactError, match="metadata sizes obs=6"):
        export_policy_onnx(
            algo.policies[0],
            metadata(obs_dim=6, obs_names=[f"o{i}" for i in range(6)]),
        )
    with pytest.raises(PolicyArtifactError, match="not a valid ONNX model"):
        OnnxPolicy(b"\x00garbage")
    with pytest.raises(PolicyArtifactError, match="action_names has 1 entries; expected 2"):
        metadata(action_names=["a"])
    with pytest.raises(PolicyArtifactError, match=r"low=1\.0 must be below high=1\.0"):
        metadata(action_low=[1.0, -2.0])
    assert dataclasses.replace(metadata(), policy_version=5).policy_version == 5


def test_policy_initial_action_sets_the_mean_and_rejects_a_wrong_length() -> None:
    from cgrpo_ros.core.policy import GaussianPolicy

    home = [0.5, -1.0, 2.0]
    policy = GaussianPolicy(4, 3, [8, 8], -0.5, initial_action=home)
    with torch.no_grad():
        mean = policy(torch.randn(5, 4))
    assert torch.allclose(mean, torch.tensor([home] * 5), atol=0.05)
    with pytest.raises(ValueError, match="initial_action has 2 entries; allowed: act_dim=3"):
        GaussianPolicy(4, 3, [8], -0.5, initial_action=[0.0, 1.0])


def test_state_clusters_do_not_depend_on_the_thread_count() -> None:
    """CGRPO.cluster_threads only speeds up Eq. 7: the same eps, labels and update with one
    OpenMP thread or two (scikit-learn splits the neighbour search in fixed chunks)."""
    from threadpoolctl import threadpool_limits

    from cgrpo_ros.core.advantages import state_clusters
    from cgrpo_ros.testing.batches import synthetic_batch

    states = np.random.default_rng(0).standard_normal((3000, 17)).cumsum(axis=0)
    settings = dict(eps=None, min_samples=None, eps_quantile=0.5, max_points=8192)
    found = []
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="openmp"):
            found.append(state_clusters(states, rng=np.random.default_rng(1), **settings))
    assert found[0].eps == found[1].eps and found[0].num_clusters > 1
    np.testing.assert_array_equal(found[0].labels, found[1].labels)

    batches = [synthetic_batch(600, OBS_DIM, ACT_DIM, seed=i, episode_steps=200) for i in range(3)]
    one, two = CGRPO(small_config(), OBS_DIM, ACT_DIM), CGRPO(small_config(), OBS_DIM, ACT_DIM)
    two.cluster_threads = 2
    metrics = [algo.update(batches) for algo in (one, two)]
    assert metrics[0].dbscan_eps == metrics[1].dbscan_eps
    for a, b in zip(params_of(one), params_of(two), strict=True):
        np.testing.assert_array_equal(a, b)
