"""The learned state-value baseline (config value_baseline, our option; docs/algorithm.md).

GAE recomputed by hand on a tiny case (SB3 test_gae.py style), the critic's regression, the
checkpoint round trip with the critic, and the validation of the new configuration fields.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cgrpo_ros.core.advantages import generalized_advantages, return_to_go
from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.cgrpo import CGRPO
from cgrpo_ros.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    training_state,
)
from cgrpo_ros.core.config import CGRPOConfig, ConfigError
from cgrpo_ros.core.value import ValueFunction

OBS_DIM, ACT_DIM, STEPS = 4, 2, 120
RANGE = "is outside the allowed range"


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_by_hand(gamma: float, lam: float) -> None:
    # Steps 0-1: an episode that terminates after step 1 (the future is zero).
    # Steps 2-4: an episode truncated by a time limit after step 4 (bootstrap cut_values[4]).
    # Steps 5-6: a segment cut by the end of the batch (bootstrap cut_values[6]).
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    v = np.array([0.5, -1.0, 2.0, 0.25, 1.5, -0.5, 3.0])
    cut = np.array([9.0, 9.0, 9.0, 9.0, 10.0, 9.0, 20.0])  # read only at cuts (steps 4, 6)
    dones = np.array([False, True, False, False, True, False, False])
    terminated = np.array([False, True, False, False, False, False, False])
    adv, target = generalized_advantages(r, v, dones, terminated, gamma, lam, cut)

    d = [
        r[0] + gamma * v[1] - v[0],
        r[1] - v[1],  # terminal: no bootstrap
        r[2] + gamma * v[3] - v[2],
        r[3] + gamma * v[4] - v[3],
        r[4] + gamma * 10.0 - v[4],  # time limit: bootstrap from the cut value
        r[5] + gamma * v[6] - v[5],
        r[6] + gamma * 20.0 - v[6],  # end of batch: bootstrap from the cut value
    ]
    gl = gamma * lam
    expected = [
        d[0] + gl * d[1],
        d[1],
        d[2] + gl * d[3] + gl**2 * d[4],
        d[3] + gl * d[4],
        d[4],
        d[5] + gl * d[6],
        d[6],
    ]
    np.testing.assert_allclose(adv, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(target, np.array(expected) + v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_gae_with_lambda_one_and_zero_values_is_the_eq6_return_to_go(gamma: float) -> None:
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=30)
    dones = np.zeros(30, dtype=bool)
    dones[[7, 19]] = True
    terminated = np.zeros(30, dtype=bool)
    terminated[7] = True
    zeros = np.zeros(30)
    adv, target = generalized_advantages(rewards, zeros, dones, terminated, gamma, 1.0, zeros)
    np.testing.assert_allclose(adv, return_to_go(rewards, dones, gamma), rtol=1e-12)
    np.testing.assert_allclose(target, adv)


def test_critic_regression_reduces_its_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    obs = rng.normal(loc=3.0, scale=5.0, size=(512, OBS_DIM)).astype(np.float32)
    targets = 100.0 * np.sin(obs[:, 0] / 5.0) + 40.0 * obs[:, 1] / 5.0 + 250.0
    critic = ValueFunction(OBS_DIM, (32, 32))
    critic.normalizer.update(obs)
    critic.returns.update(targets[:, None])
    assert critic.return_scale() == pytest.approx(float(np.std(targets)), rel=1e-6)
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        before, after = critic.fit(
            obs, targets, optimizer, epochs=5, minibatch_size=64, max_grad_norm=0.5,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        losses.append((before, after))
    assert losses[0][1] < 0.5 * losses[0][0]
    assert losses[2][1] < losses[0][1] and losses[1][0] == pytest.approx(losses[0][1])
    # predict() is in return units: the fitted critic explains most of the targets' variance.
    residual = targets - critic.predict(obs)
    assert np.var(residual) < 0.1 * np.var(targets)


def batches(seed: int, n: int = 2) -> list[RolloutBatch]:
    """Episodes of 50 steps; the first ends terminated, the second by a time limit."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        obs = rng.normal(size=(STEPS, OBS_DIM)).astype(np.float32)
        actions = rng.normal(size=(STEPS, ACT_DIM)).astype(np.float32)
        rewards = (1.0 + obs[:, 0] - np.square(actions).sum(1)).astype(np.float32)
        dones = np.zeros(STEPS, dtype=bool)
        dones[[49, 99]] = True
        terminated = np.zeros(STEPS, dtype=bool)
        terminated[49] = True
        out.append(
            RolloutBatch(obs, actions, rewards, dones, terminated,
                         np.array([50.0, 48.0]), np.array([50, 50]))
        )  # fmt: skip
    return out


def value_config(**overrides: object) -> CGRPOConfig:
    values: dict[str, object] = dict(
        num_policies=2, num_groups=2, hidden_sizes=(16,), epochs=2, minibatch_size=32, seed=3,
        value_baseline=True, value_hidden_sizes=(16,), value_epochs=3,
    )  # fmt: skip
    values.update(overrides)
    return CGRPOConfig.for_variant("full", **values)


def everything(algo: CGRPO) -> list[torch.Tensor]:
    tensors = [t for p in algo.policies for t in p.state_dict().values()]
    if algo.value is not None:
        tensors += list(algo.value.state_dict().values())
    return tensors


def test_update_uses_and_fits_the_critic_instead_of_dbscan() -> None:
    algo = CGRPO(value_config(), OBS_DIM, ACT_DIM)
    assert algo.value is not None
    critic_before = [t.clone() for t in algo.value.state_dict().values()]
    metrics = algo.update(batches(1))
    assert metrics.num_state_clusters == 0  # DBSCAN (Eq. 7) is not run
    assert 0.0 < metrics.value_loss_after < metrics.value_loss_before
    assert int(algo.value.normalizer.count) == 2 * STEPS
    changed = [
        not torch.equal(a, b)
        for a, b in zip(critic_before, algo.value.state_dict().values(), strict=True)
    ]
    assert all(changed)  # weights, the normalisers' statistics and the return scale all moved
    # Off by default: no critic, and the same advantages as before the option existed.
    assert CGRPO(value_config(value_baseline=False), OBS_DIM, ACT_DIM).value is None
    assert CGRPOConfig().value_baseline is False


def test_checkpoint_with_the_critic_gives_the_same_next_update(tmp_path: Path) -> None:
    uninterrupted = CGRPO(value_config(), OBS_DIM, ACT_DIM)
    uninterrupted.update(batches(1))
    save_checkpoint(tmp_path / "v.ckpt", uninterrupted, {"env_steps": 240})
    state = read_checkpoint(tmp_path / "v.ckpt")
    assert "value" in state and "value_optimizer" in state
    uninterrupted.update(batches(2))

    restored, _ = load_checkpoint(tmp_path / "v.ckpt")
    assert restored.value is not None and restored.iteration == 1
    restored.update(batches(2))
    for a, b in zip(everything(uninterrupted), everything(restored), strict=True):
        assert torch.equal(a, b)
    # ... and without the critic's optimiser state the next update differs (Adam's moments).
    fresh, _ = load_checkpoint(tmp_path / "v.ckpt")
    assert fresh.value is not None and fresh.value_optimizer is not None
    fresh.value_optimizer = torch.optim.Adam(fresh.value.parameters(), lr=1e-3, eps=1e-5)
    fresh.update(batches(2))
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            uninterrupted.value.state_dict().values(),  # type: ignore[union-attr]
            fresh.value.state_dict().values(),
            strict=True,
        )
    )


def write_raw_checkpoint(path: Path, state: dict[str, object]) -> None:
    """A checkpoint file from a state dict (the format of save_checkpoint)."""
    import hashlib

    from cgrpo_ros.core import checkpoint

    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = buffer.getvalue()
    prefix = checkpoint._PREFIX.pack(
        checkpoint.MAGIC, checkpoint.FORMAT_VERSION, hashlib.sha256(body).digest()
    )
    path.write_bytes(prefix + body)


def test_old_checkpoints_without_a_critic(tmp_path: Path) -> None:
    # A checkpoint written before the option existed: no critic, no value_* config keys.
    plain_config = CGRPOConfig.for_variant(
        "full", num_policies=2, num_groups=2, hidden_sizes=(16,), epochs=2, seed=3
    )
    plain = CGRPO(plain_config, OBS_DIM, ACT_DIM)
    plain.update(batches(1))
    state = training_state(plain)
    assert "value" not in state
    config = json.loads(state["config_json"])
    for key in [k for k in config if k.startswith("value_") or k == "gae_lambda"]:
        del config[key]
    state["config_json"] = json.dumps(config, sort_keys=True)
    write_raw_checkpoint(tmp_path / "old.ckpt", state)
    restored, _ = load_checkpoint(tmp_path / "old.ckpt")
    assert restored.value is None and restored.config == plain.config
    # A run with the option cannot resume from a checkpoint that holds no critic.
    state["config_json"] = json.dumps({**config, "value_baseline": True}, sort_keys=True)
    write_raw_checkpoint(tmp_path / "nocritic.ckpt", state)
    with pytest.raises(CheckpointError, match="holds no critic"):
        load_checkpoint(tmp_path / "nocritic.ckpt")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("gae_lambda", 1.5, "gae_lambda=1.5 is outside the allowed range [0.0, 1.0]"),
        ("gae_lambda", -0.1, "gae_lambda=-0.1 is outside the allowed range [0.0, 1.0]"),
        ("value_learning_rate", 0.0, f"value_learning_rate=0.0 {RANGE} (0.0, 1.0]"),
        ("value_epochs", 0, "value_epochs=0 is outside the allowed range [1, 1000]"),
        ("value_minibatch_size", 0, f"value_minibatch_size=0 {RANGE} [1, 1000000]"),
        ("value_hidden_sizes", (0,), f"value_hidden_sizes[]=0 {RANGE} [1, 4096]"),
        ("value_hidden_sizes", (), "value_hidden_sizes=() must be a non-empty tuple"),
        ("value_baseline", "yes", "value_baseline='yes' must be true or false"),
        ("linear_baseline", True, "value_baseline=True and linear_baseline=True"),
        ("group_size", 4, "value_baseline=True with group_size=4"),
    ],
)  # fmt: skip
def test_value_config_errors_name_field_value_and_range(
    field: str, value: object, fragment: str
) -> None:
    values: dict[str, object] = dict(num_policies=2, num_groups=2, value_baseline=True)
    values[field] = value
    with pytest.raises(ConfigError) as info:
        CGRPOConfig(**values)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_value_config_round_trips_through_plain_data() -> None:
    config = CGRPOConfig.from_dict({"value_baseline": True, "value_hidden_sizes": [32, 16]})
    assert config.value_hidden_sizes == (32, 16)
    assert CGRPOConfig.from_dict(config.to_dict()) == config
    assert config.config_hash() != CGRPOConfig().config_hash()
