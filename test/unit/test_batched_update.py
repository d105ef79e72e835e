"""The batched update (all policies in one network pass per step) equals the literal loop.

`LoopCGRPO` below is Eq. 12 written one policy at a time, as the update was before issue 14:
a module forward per term (own minibatch, successor states, shared probe states) and one loss
per policy. Both run the same optimisers on the same minibatches, so after a whole update the
parameters must agree to float32 rounding; a change that alters what the batched update
computes (a term, a mask, a probe set, a skipped step) breaks this test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
import torch

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.cgrpo import _LOSS_STATS, CGRPO, _UpdateStats
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.losses import clipped_surrogate, diversity_penalty, smoothness_penalty
from cgrpo_ros.core.policy import GaussianPolicy, gaussian_kl, gaussian_log_prob

OBS_DIM, ACT_DIM = 5, 2


class LoopCGRPO(CGRPO):
    """CGRPO whose gradient steps loop over policies and terms, one module call each."""

    def _optimise(
        self,
        batches: Sequence[RolloutBatch],
        advantages: Sequence[npt.NDArray[np.float64]],
        groups: npt.NDArray[np.int64],
        epsilons: Sequence[float],
    ) -> _UpdateStats:
        cfg = self.config
        n = len(self.policies)
        obs = [torch.as_tensor(b.obs) for b in batches]
        actions = [torch.as_tensor(b.actions) for b in batches]
        with torch.no_grad():
            old = [p.log_prob(o, a) for p, o, a in zip(self.policies, obs, actions, strict=True)]
            refs = [self.reference.moments(o) for o in obs]
        adv = [torch.as_tensor(a, dtype=torch.float32) for a in advantages]
        has_next = [torch.as_tensor(np.append(~b.dones[:-1], False)) for b in batches]
        steps = [b.num_steps for b in batches]
        num_minibatches = max(1, math.ceil(max(steps) / cfg.minibatch_size))
        group_ids = sorted(set(groups.tolist()))
        use_diversity = cfg.diversity_coef > 0 and len(group_ids) > 1
        sums = {k: [0.0] * n for k in _LOSS_STATS}
        diversity_total, count = 0.0, 0
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + self.iteration)
        for _ in range(cfg.epochs):
            perms = [torch.randperm(t, generator=generator) for t in steps]
            for mb in range(num_minibatches):
                chunks = [math.ceil(t / num_minibatches) for t in steps]
                idx_all = [p[mb * c : (mb + 1) * c] for p, c in zip(perms, chunks, strict=True)]
                total = torch.zeros(())
                for i, policy in enumerate(self.policies):
                    idx = idx_all[i]
                    if len(idx) == 0:
                        continue
                    mean = policy(obs[i][idx])
                    log_std = policy.log_std.expand_as(mean)
                    log_prob = gaussian_log_prob(mean, log_std, actions[i][idx])
                    surrogate = clipped_surrogate(log_prob, old[i][idx], adv[i][idx], epsilons[i])
                    loss = -surrogate - cfg.entropy_coef * policy.entropy()
                    smooth = torch.zeros(())
                    if cfg.smoothness_coef > 0:
                        pairs = idx[has_next[i][idx]]
                        smooth = smoothness_penalty(
                            policy(obs[i][pairs]), policy(obs[i][pairs + 1]), cfg.smoothness_coef
                        )
                    ref_kl = torch.zeros(())
                    if cfg.use_reference and cfg.reference_coef > 0:
                        kl = gaussian_kl(mean, log_std, refs[i][0][idx], refs[i][1][idx])
                        ref_kl = cfg.reference_coef * kl.mean()
                    total = total + loss + smooth + ref_kl
                    sums["surrogate"][i] += float(surrogate.detach())
                    sums["smoothness"][i] += float(smooth.detach())
                if use_diversity:
                    probe = torch.cat([o[idx] for o, idx in zip(obs, idx_all, strict=True)])
                    outputs = [policy(probe) for policy in self.policies]
                    behaviour = [
                        torch.stack([outputs[i] for i in range(n) if groups[i] == g]).mean(0)
                        for g in group_ids
                    ]
                    diversity = diversity_penalty(behaviour, cfg.diversity_coef, cfg.diversity_tau)
                    total = total + diversity
                    diversity_total += float(diversity.detach())
                for optimizer in self.optimizers:
                    optimizer.zero_grad(set_to_none=True)
                total.backward()  # type: ignore[no-untyped-call]
                for policy, optimizer in zip(self.policies, self.optimizers, strict=True):
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                count += 1
        per_policy = {k: [v / count for v in vals] for k, vals in sums.items()}
        return _UpdateStats(**per_policy, diversity=diversity_total / count)


def batches_of(steps: Sequence[int], seed: int = 0) -> list[RolloutBatch]:
    rng = np.random.default_rng(seed)
    result = []
    for t in steps:
        obs = rng.normal(size=(t, OBS_DIM)).astype(np.float32)
        actions = rng.normal(size=(t, ACT_DIM)).astype(np.float32)
        rewards = (-np.square(actions - obs[:, :ACT_DIM]).sum(1)).astype(np.float32)
        dones = np.zeros(t, dtype=bool)
        dones[9::10] = True
        result.append(
            RolloutBatch(
                obs, actions, rewards, dones, np.zeros(t, dtype=bool),
                np.array([-10.0]), np.array([10]),
            )
        )  # fmt: skip
    return result


def run_both(config: CGRPOConfig, steps: Sequence[int]) -> tuple[CGRPO, CGRPO, list[dict]]:
    batched, loop = CGRPO(config, OBS_DIM, ACT_DIM), LoopCGRPO(config, OBS_DIM, ACT_DIM)
    reports = []
    for iteration in range(2):
        data = batches_of(steps, seed=iteration)
        reports.append({"batched": batched.update(data), "loop": loop.update(data)})
    return batched, loop, reports


def assert_same_policies(a: Sequence[GaussianPolicy], b: Sequence[GaussianPolicy]) -> None:
    for p, q in zip(a, b, strict=True):
        for (name, x), (_, y) in zip(p.named_parameters(), q.named_parameters(), strict=True):
            np.testing.assert_allclose(
                x.detach().numpy(), y.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=name
            )


@pytest.mark.parametrize(
    ("variant", "steps", "overrides"),
    [
        ("full", [96, 96, 96], {}),
        ("simple", [96, 96, 96], {}),
        ("full", [96, 96, 96], {"entropy_coef": 0.01, "smoothness_coef": 0.5}),
        # Unequal batches: padded minibatches, and with 3 steps against 4 minibatches the
        # second policy has an empty last minibatch (no loss; with Eq. 11 still a step).
        ("full", [128, 3, 70], {"entropy_coef": 0.01}),
        ("full", [128, 3, 70], {"diversity_coef": 0.0, "entropy_coef": 0.01}),
    ],
)
def test_batched_update_equals_the_per_policy_loop(
    variant: str, steps: list[int], overrides: dict[str, float]
) -> None:
    config = CGRPOConfig.for_variant(
        variant,  # type: ignore[arg-type]
        num_policies=3,
        num_groups=2,
        hidden_sizes=(16, 8),
        epochs=2,
        minibatch_size=32,
        seed=3,
        diversity_tau=-1.0,  # Eq. 11 active whenever groups > 1, so its gradient is tested
        **overrides,
    )
    batched, loop, reports = run_both(config, steps)
    assert_same_policies(batched.policies, loop.policies)
    for report in reports:
        b, lp = report["batched"], report["loop"]
        assert b.groups == lp.groups
        assert b.diversity == pytest.approx(lp.diversity, rel=1e-4, abs=1e-7)
        for pb, pl in zip(b.policies, lp.policies, strict=True):
            assert pb.surrogate == pytest.approx(pl.surrogate, rel=1e-3, abs=1e-6)
            assert pb.smoothness == pytest.approx(pl.smoothness, rel=1e-3, abs=1e-6)
    if variant == "full" and config.diversity_coef > 0:
        assert reports[0]["batched"].diversity > 0  # the coupling term really ran
