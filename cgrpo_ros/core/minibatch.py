"""One update's data as tensors: every policy's batch padded to [N, T_max, ...] once
(`UpdateData`), and one gradient step's slice of it for all N policies (`Minibatch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.policy import GaussianPolicy
from cgrpo_ros.core.reference import ReferencePolicy


@dataclass
class Minibatch:
    """One gradient step's data for all N policies, padded to a common width B.

    `inputs[i]` is what policy i's network sees ([R, obs_dim], normalised by policy i): its
    own B steps, or with Eq. 11 every policy's steps in policy order (the shared probe set,
    which holds its own steps as block i), then (with Eq. 10) its own steps' successors.
    """

    width: int  # B
    real: torch.Tensor | None  # [N, B] True on real steps, False on padding; None: no padding
    has_rows: list[bool]  # the policy has at least one step in this minibatch
    inputs: torch.Tensor  # [N, R, obs_dim]
    actions: torch.Tensor  # [N, B, act_dim]
    adv: torch.Tensor  # [N, B]
    old_log_prob: torch.Tensor  # [N, B]
    ref_mean: torch.Tensor  # [N, B, act_dim]
    ref_log_std: torch.Tensor  # [N, B, act_dim]
    pairs: torch.Tensor  # [N, B] real steps whose successor lies in the same episode
    own_rows: torch.Tensor | None  # [N, B] its own steps' rows among the R; None: the first B
    probe_rows: slice | torch.Tensor  # the probe states' real rows among the R
    next_rows: slice  # the successors' rows among the R


@dataclass
class UpdateData:
    """All policies' batches as padded tensors [N, T_max, ...], fixed during the update."""

    normalised: torch.Tensor  # [N, sum T, obs_dim]: row i = policy i's view of all batches
    offsets: list[int]  # where batch j starts along normalised's second axis
    steps: list[int]
    actions: torch.Tensor
    adv: torch.Tensor
    old_log_prob: torch.Tensor
    ref_mean: torch.Tensor
    ref_log_std: torch.Tensor
    has_next: torch.Tensor  # (t, t+1) lies inside one episode (Eq. 10 pairs)

    @staticmethod
    @torch.no_grad()
    def build(
        policies: Sequence[GaussianPolicy],
        batches: Sequence[RolloutBatch],
        advantages: Sequence[npt.NDArray[np.float64]],
        reference: ReferencePolicy,
    ) -> UpdateData:
        obs = [torch.as_tensor(b.obs) for b in batches]
        actions = [torch.as_tensor(b.actions) for b in batches]
        moments = [reference.moments(o) for o in obs]
        steps = [b.num_steps for b in batches]
        # The normalisers move only after the update, so each policy's normalised view of
        # the states is computed once here instead of in every forward pass.
        everything = torch.cat(obs)
        normalised = torch.stack([p.normalizer(everything) for p in policies])
        return UpdateData(
            normalised=normalised,
            offsets=[0, *np.cumsum(steps)[:-1].tolist()],
            steps=steps,
            actions=_pad(actions),
            adv=_pad([torch.as_tensor(a, dtype=torch.float32) for a in advantages]),
            old_log_prob=_pad(
                [p.log_prob(o, a) for p, o, a in zip(policies, obs, actions, strict=True)]
            ),
            ref_mean=_pad([m for m, _ in moments]),
            ref_log_std=_pad([s for _, s in moments]),
            has_next=_pad([torch.as_tensor(np.append(~b.dones[:-1], False)) for b in batches]),
        )

    def epoch(
        self,
        perms: Sequence[torch.Tensor],
        chunks: Sequence[int],
        num_minibatches: int,
        *,
        with_probe: bool,
        with_next: bool,
    ) -> list[Minibatch]:
        """One epoch's minibatches: policy i's m-th is perms[i][m*c_i : (m+1)*c_i].

        Every index and gather of the epoch happens here, in one tensor operation each, so
        that a gradient step only slices.
        """
        n, m, width = len(perms), num_minibatches, max(chunks)
        index = torch.zeros(m, n, width, dtype=torch.long)
        mask = torch.zeros(m, n, width, dtype=torch.bool)
        for i, (perm, c) in enumerate(zip(perms, chunks, strict=True)):
            padded = torch.zeros(m * c, dtype=torch.long)
            padded[: len(perm)] = perm
            is_real = torch.arange(m * c) < len(perm)
            index[:, i, :c] = padded.view(m, c)
            mask[:, i, :c] = is_real.view(m, c)
        policy = torch.arange(n).view(1, n, 1)
        own = torch.tensor(self.offsets).view(1, n, 1) + index  # rows of `normalised`
        columns = [own]
        own_rows = None
        if with_probe:
            columns = [own.reshape(m, 1, n * width).expand(m, n, n * width)]
            own_rows = torch.arange(n * width).view(n, width)
        next_start = sum(c.shape[2] for c in columns)
        if with_next:
            last = torch.tensor(self.steps).view(1, n, 1) - 1
            columns.append(own - index + torch.minimum(index + 1, last))
        inputs = self.normalised[policy, torch.cat(columns, dim=2)]
        actions, adv = self.actions[policy, index], self.adv[policy, index]
        old_log_prob = self.old_log_prob[policy, index]
        ref_mean, ref_log_std = self.ref_mean[policy, index], self.ref_log_std[policy, index]
        pairs = mask & self.has_next[policy, index]
        has_rows = mask.any(dim=2).tolist()
        minibatches = []
        for k in range(m):
            real: torch.Tensor | None = None
            probe_rows: slice | torch.Tensor = slice(0, n * width)
            if not bool(mask[k].all()):  # padding: only real steps are probe states
                real = mask[k]
                probe_rows = torch.nonzero(real.reshape(-1)).squeeze(1)
            minibatches.append(
                Minibatch(
                    width=width,
                    real=real,
                    has_rows=has_rows[k],
                    inputs=inputs[k],
                    actions=actions[k],
                    adv=adv[k],
                    old_log_prob=old_log_prob[k],
                    ref_mean=ref_mean[k],
                    ref_log_std=ref_log_std[k],
                    pairs=pairs[k],
                    own_rows=own_rows,
                    probe_rows=probe_rows,
                    next_rows=slice(next_start, next_start + (width if with_next else 0)),
                )
            )
        return minibatches


def _pad(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack per-policy tensors of different lengths along a new first axis, zero-padded."""
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
