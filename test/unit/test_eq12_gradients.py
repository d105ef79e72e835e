"""The hand-written gradient of Eq. 12 (`eq12_gradients`) against autograd on `_total_loss`.

Every parameter's gradient and every diagnostic, on every minibatch of an epoch, for the
layouts the update uses: padding (unequal batches), the shared probe set of Eq. 11 (active
and inactive, groups of one and of two policies), Eq. 10 and the reference KL on and off.
The policies are moved away from the ones that collected the data, so that ratios leave the
clip range and both branches of Eq. 8's min are taken.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cgrpo_ros.core.cgrpo import CGRPO
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.eq12_gradients import Eq12Terms
from cgrpo_ros.core.minibatch import UpdateData
from cgrpo_ros.testing.batches import synthetic_batch

OBS_DIM, ACT_DIM = 5, 3

CASES = {
    # name: (variant, overrides, groups' members or None, batch sizes)
    "full, two groups, Eq. 11 active, padding": (
        "full", {"diversity_tau": -0.9}, [[0, 2], [1]], [37, 50, 29]
    ),
    "full, Eq. 11 inactive": ("full", {"diversity_tau": 0.999}, [[0], [1]], [40, 40]),
    "full, one group: no probe set": ("full", {}, None, [33, 48]),
    "no reference, no smoothness": (
        "full", {"use_reference": False, "smoothness_coef": 0.0}, [[0], [1]], [30, 41]
    ),
    "simple": ("simple", {}, None, [40, 31]),
}  # fmt: skip


def _moved_algo(variant: str, overrides: dict[str, object], n: int) -> CGRPO:
    config = CGRPOConfig.for_variant(
        variant,
        num_policies=n,
        num_groups=min(n, 2),
        seed=1,
        hidden_sizes=(8, 6),
        minibatch_size=16,
        entropy_coef=0.03,
        **overrides,  # type: ignore[arg-type]
    )
    return CGRPO(config, OBS_DIM, ACT_DIM)


def _epoch(algo: CGRPO, sizes: list[int], with_probe: bool):  # type: ignore[no-untyped-def]
    batches = [synthetic_batch(t, OBS_DIM, ACT_DIM, seed=i, episode_steps=11) for i, t in
               enumerate(sizes)]  # fmt: skip
    rng = np.random.default_rng(5)
    advantages = [rng.standard_normal(t) for t in sizes]
    for policy, batch in zip(algo.policies, batches, strict=True):
        policy.normalizer.update(batch.obs)
    data = UpdateData.build(algo.policies, batches, advantages, algo.reference)
    with torch.no_grad():  # the policies move after the data was collected
        for i, policy in enumerate(algo.policies):
            for p in policy.parameters():
                p.add_(0.15 * torch.randn_like(p))
            policy.log_std.add_(0.1 * (i + 1))
    generator = torch.Generator().manual_seed(0)
    perms = [torch.randperm(t, generator=generator) for t in sizes]
    num_minibatches = -(-max(sizes) // algo.config.minibatch_size)
    chunks = [-(-t // num_minibatches) for t in sizes]
    return data.epoch(
        perms,
        chunks,
        num_minibatches,
        with_probe=with_probe,
        with_next=algo.config.smoothness_coef > 0,
    )


def _gradients(algo: CGRPO, analytic: bool, *args: object) -> tuple[list[torch.Tensor], ...]:
    algo.analytic_gradients = analytic
    terms = Eq12Terms.from_config(algo.config)
    stats, diversity = algo._gradients(*args, terms)  # type: ignore[arg-type]
    grads = [p.grad.clone() for policy in algo.policies for p in policy.parameters()]  # type: ignore[union-attr]
    return grads, stats.detach(), diversity.detach()


@pytest.mark.parametrize("case", list(CASES))
def test_hand_gradient_equals_autograd(case: str) -> None:
    variant, overrides, members, sizes = CASES[case]
    algo = _moved_algo(variant, overrides, len(sizes))
    epsilon = torch.tensor([0.1, 0.2, 0.15][: len(sizes)]).unsqueeze(1)
    minibatches = _epoch(algo, sizes, with_probe=members is not None)
    assert any(mb.real is not None for mb in minibatches) or len(set(sizes)) == 1
    clipped = 0.0
    for minibatch in minibatches:
        hand, hand_stats, hand_div = _gradients(algo, True, minibatch, epsilon, members)
        auto, auto_stats, auto_div = _gradients(algo, False, minibatch, epsilon, members)
        for got, expected in zip(hand, auto, strict=True):
            scale = float(expected.abs().max()) + 1e-12
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * scale)
        torch.testing.assert_close(hand_stats, auto_stats, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(hand_div, auto_div, rtol=1e-5, atol=1e-7)
        clipped += float(hand_stats[0].sum())
        if case == "full, two groups, Eq. 11 active, padding":
            assert float(hand_div) > 0  # Eq. 11's gradient is exercised
    assert clipped > 0  # some ratios left the clip range: both branches of the min are taken


def test_one_update_analytic_equals_autograd() -> None:
    """A whole update (10 epochs of Adam steps, clipping, the Eq. 11 coupling) ends at the
    same parameters either way, up to float rounding."""
    hand = _moved_algo("full", {"diversity_tau": -0.9}, 2)
    auto = copy.deepcopy(hand)
    auto.analytic_gradients = False
    batches = [synthetic_batch(96, OBS_DIM, ACT_DIM, seed=i, episode_steps=25) for i in range(2)]
    metrics = [algo.update(batches) for algo in (hand, auto)]
    for a, b in zip(hand.policies, auto.policies, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert metrics[0].diversity == pytest.approx(metrics[1].diversity, rel=1e-4, abs=1e-7)
    for x, y in zip(metrics[0].policies, metrics[1].policies, strict=True):
        assert x.clip_fraction == pytest.approx(y.clip_fraction, abs=1e-3)
        assert x.surrogate == pytest.approx(y.surrogate, rel=1e-3, abs=1e-6)
