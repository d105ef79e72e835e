"""Typed, validated configuration of CGRPO (the paper's section 3.2 and Algorithm 1)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cgrpo_ros.core.run_shape import SHAPE_FIELDS, RunShape

Variant = Literal["full", "simple"]
GroupCredit = Literal["all_steps", "first_action"]
GroupScale = Literal["std", "none"]
RUN_SHAPE_CONFIG_FIELDS = ("num_policies", "num_groups", "seed")
"""The fields a run's shape sets (RunShape.config_fields); they win over a config file."""


class ConfigError(ValueError):
    """A configuration value is outside what is allowed; the message names field and value."""


def _check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    bad_type = isinstance(value, bool) or not isinstance(value, int | float)
    if bad_type or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is not a finite number")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        lo = "(" if low_open else "["
        raise ConfigError(f"{name}={value!r} is outside the allowed range {lo}{low}, {high}]")


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an integer in [{low}, {high}]")
    if not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is outside the allowed range [{low}, {high}]")


@dataclass(kw_only=True, frozen=True)
class CGRPOConfig:
    """Every knob of the CGRPO update. Construction validates every field."""

    variant: Variant = "full"
    """'full' or 'simple' (paper section 7); the per-term switches below override it."""
    num_policies: int = 2
    """N, the number of policies trained together."""
    num_groups: int = 2
    """K, the number of k-means policy groups (Eq. 5); K <= N."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of each policy's MLP (tanh)."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the Gaussian policy."""
    gamma: float = 0.99
    """Discount of the return-to-go G_i(s_t) (Eq. 6)."""
    learning_rate: float = 3e-4
    """Adam learning rate of every policy."""
    epochs: int = 10
    """Passes over each iteration's batch."""
    minibatch_size: int = 64
    """Steps of one policy per gradient step."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip per policy."""
    clip_epsilon_base: float = 0.2
    """epsilon_base of Eq. 9 (the fixed epsilon of the simple variant)."""
    adaptive_clip: bool = True
    """Eq. 9 on (full) or a fixed epsilon_base (simple)."""
    max_clip_epsilon: float = 0.5
    """Upper cap on epsilon_g so that one noisy group cannot take unbounded steps."""
    advantage_delta: float = 1e-8
    """delta of Eq. 8."""
    horizon_normalized_returns: bool = True
    """Rescale G_t of segments cut by a time limit or the batch end (docs/algorithm.md)."""
    use_state_clusters: bool = True
    """Eq. 6-7: baseline = mean return of the DBSCAN cluster; off: the batch mean."""
    dbscan_eps: float | None = None
    """Eq. 7 epsilon on standardised states; None picks it from the k-distance quantile."""
    dbscan_min_samples: int | None = None
    """Eq. 7 minPts; None means 2 * state dimension (the usual DBSCAN rule), at least 4."""
    dbscan_eps_quantile: float = 0.5
    """Quantile of the minPts-nearest-neighbour distance used when dbscan_eps is None."""
    dbscan_project_dims: int | None = None
    """Cluster states on this many principal components (None: all state dimensions)."""
    dbscan_max_points: int = 8192
    """States beyond this are subsampled for fitting DBSCAN; the rest join the nearest core."""
    linear_baseline: bool = False
    """Baseline = linear regression of the return on state features (Duan et al. 2016)
    instead of the Eq. 6 cluster mean; see docs/algorithm.md."""
    value_baseline: bool = False
    """Learned state-value baseline: a critic V(s) owned by the learner (never sent to the
    workers) and GAE advantages replace the Eq. 6 cluster mean; Eq. 8-9 are unchanged
    (core/value.py, docs/algorithm.md)."""
    gae_lambda: float = 0.95
    """lambda of GAE with the value baseline (1: Monte Carlo returns minus V(s))."""
    value_hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the critic's MLP (tanh)."""
    value_learning_rate: float = 1e-3
    """Adam learning rate of the critic."""
    value_epochs: int = 10
    """Passes of the critic's regression over each iteration's batch (all policies' steps)."""
    value_minibatch_size: int = 64
    """Steps per gradient step of the critic's regression."""
    group_size: int = 0
    """G of same-state groups: branches rolled out from each saved simulator state (0: off,
    the paper's plain rollouts). Needs a simulator (docs/algorithm.md)."""
    group_horizon: int = 64
    """H: steps of each branch of a same-state group."""
    group_common_noise: bool = False
    """Branches of a group share their action noise after the first step."""
    group_credit: GroupCredit = "all_steps"
    """Which branch steps get a group-relative advantage: every depth, or the first only."""
    group_scale: GroupScale = "std"
    """Group-relative advantage divided by the group's std (GRPO) or only centred ('none')."""
    smoothness_coef: float = 0.01
    """lambda_s of Eq. 10 (0 disables)."""
    diversity_coef: float = 0.01
    """lambda_d of Eq. 11 (0 disables)."""
    diversity_tau: float = 0.9
    """tau of Eq. 11: cosine similarity above which groups are penalised."""
    use_reference: bool = True
    """Reference policy: KL feature in Eq. 4 and the tracking term of the full variant."""
    reference_coef: float = 0.01
    """Weight of KL(pi_i || pi_ref) in the loss when use_reference (0: feature only)."""
    reference_top_k: int = 1
    """How many top-return policies form the reference mixture (Algorithm 1, line 33)."""
    entropy_coef: float = 0.0
    """Entropy bonus (not in the paper; 0 by default)."""
    kmeans_n_init: int = 10
    """k-means restarts (Eq. 5)."""
    seed: int = 0
    """Seed of every random number generator of the update."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Must stay empty; present so that from_dict can name unknown keys."""

    def __post_init__(self) -> None:
        if self.variant not in ("full", "simple"):
            raise ConfigError(f"variant={self.variant!r} is not one of 'full', 'simple'")
        for name in RUN_SHAPE_CONFIG_FIELDS:  # ranges declared once, in run_shape.py
            shape = SHAPE_FIELDS[name]
            _check_int(name, getattr(self, name), shape.low, shape.high)
        if self.num_groups > self.num_policies:
            raise ConfigError(
                f"num_groups={self.num_groups} exceeds num_policies={self.num_policies}: "
                "k-means cannot form more groups than policies (K <= N)"
            )
        if not self.hidden_sizes or not isinstance(self.hidden_sizes, tuple):
            raise ConfigError(f"hidden_sizes={self.hidden_sizes!r} must be a non-empty tuple")
        for width in self.hidden_sizes:
            _check_int("hidden_sizes[]", width, 1, 4096)
        _check_range("init_log_std", self.init_log_std, -5.0, 2.0)
        _check_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        _check_range("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        _check_int("epochs", self.epochs, 1, 1000)
        _check_int("minibatch_size", self.minibatch_size, 1, 1_000_000)
        _check_range("max_grad_norm", self.max_grad_norm, 0.0, 1e6, low_open=True)
        _check_range("clip_epsilon_base", self.clip_epsilon_base, 0.0, 1.0, low_open=True)
        _check_range("max_clip_epsilon", self.max_clip_epsilon, self.clip_epsilon_base, 10.0)
        _check_range("advantage_delta", self.advantage_delta, 0.0, 1.0, low_open=True)
        if self.dbscan_eps is not None:
            _check_range("dbscan_eps", self.dbscan_eps, 0.0, 1e6, low_open=True)
        if self.dbscan_min_samples is not None:
            _check_int("dbscan_min_samples", self.dbscan_min_samples, 1, 100_000)
        _check_range("dbscan_eps_quantile", self.dbscan_eps_quantile, 0.0, 1.0, low_open=True)
        if self.dbscan_project_dims is not None:
            _check_int("dbscan_project_dims", self.dbscan_project_dims, 1, 4096)
        _check_int("dbscan_max_points", self.dbscan_max_points, 16, 1_000_000)
        _check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        if not self.value_hidden_sizes or not isinstance(self.value_hidden_sizes, tuple):
            raise ConfigError(
                f"value_hidden_sizes={self.value_hidden_sizes!r} must be a non-empty tuple"
            )
        for width in self.value_hidden_sizes:
            _check_int("value_hidden_sizes[]", width, 1, 4096)
        _check_range("value_learning_rate", self.value_learning_rate, 0.0, 1.0, low_open=True)
        _check_int("value_epochs", self.value_epochs, 1, 1000)
        _check_int("value_minibatch_size", self.value_minibatch_size, 1, 1_000_000)
        if not isinstance(self.value_baseline, bool):
            raise ConfigError(f"value_baseline={self.value_baseline!r} must be true or false")
        if self.value_baseline and self.linear_baseline:
            raise ConfigError(
                "value_baseline=True and linear_baseline=True: choose one baseline (allowed: "
                "at most one of them true)"
            )
        if self.value_baseline and self.group_size:
            raise ConfigError(
                f"value_baseline=True with group_size={self.group_size}: same-state groups "
                "bring their own baseline (allowed: group_size 0 with the value baseline)"
            )
        _check_int("group_size", self.group_size, 0, 1024)
        if self.group_size == 1:
            raise ConfigError(
                "group_size=1 is not allowed: 0 (off) or >= 2 (a group needs two branches)"
            )
        _check_int("group_horizon", self.group_horizon, 1, 100_000)
        for name, value, allowed in (
            ("group_credit", self.group_credit, ("all_steps", "first_action")),
            ("group_scale", self.group_scale, ("std", "none")),
        ):
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        _check_range("smoothness_coef", self.smoothness_coef, 0.0, 1e3)
        _check_range("diversity_coef", self.diversity_coef, 0.0, 1e3)
        _check_range("diversity_tau", self.diversity_tau, -1.0, 1.0)
        _check_range("reference_coef", self.reference_coef, 0.0, 1e3)
        _check_int("reference_top_k", self.reference_top_k, 1, self.num_policies)
        _check_range("entropy_coef", self.entropy_coef, 0.0, 1e3)
        _check_int("kmeans_n_init", self.kmeans_n_init, 1, 1000)
        if self.extra:
            raise ConfigError(f"unknown configuration keys: {sorted(self.extra)}")

    @classmethod
    def for_variant(cls, variant: Variant, **overrides: Any) -> CGRPOConfig:
        """The paper's two variants (section 7.1); keyword overrides switch single terms."""
        if variant == "simple":
            # Fixed clip, basic clustering, no regularisers, no reference tracking.
            base: dict[str, Any] = dict(
                variant="simple",
                adaptive_clip=False,
                smoothness_coef=0.0,
                diversity_coef=0.0,
                use_reference=False,
                reference_coef=0.0,
            )
        elif variant == "full":
            base = dict(variant="full")
        else:
            raise ConfigError(f"variant={variant!r} is not one of 'full', 'simple'")
        base.update(overrides)
        return cls.from_dict(base)

    @classmethod
    def for_run(
        cls, variant: Variant, shape: RunShape, overrides: Mapping[str, Any] | None = None
    ) -> CGRPOConfig:
        """A run's configuration: the variant's defaults < `overrides` (a config file,
        `cgrpo.<field>` parameters) < the run's shape (N, K, seed: RUN_SHAPE_CONFIG_FIELDS)."""
        return cls.for_variant(variant, **{**(overrides or {}), **shape.config_fields()})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CGRPOConfig:
        """Build from plain data (JSON/YAML); unknown keys are an error that names them."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = {k: v for k, v in values.items() if k not in known}
        kwargs = {k: v for k, v in values.items() if k in known}
        for name in ("hidden_sizes", "value_hidden_sizes"):
            if name in kwargs and isinstance(kwargs[name], list):
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs, extra=unknown)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.pop("extra")
        values["hidden_sizes"] = list(self.hidden_sizes)
        values["value_hidden_sizes"] = list(self.value_hidden_sizes)
        return values

    def config_hash(self) -> str:
        """sha256 of the canonical JSON, written into exported models and checkpoints."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def load_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping of CGRPOConfig fields (safe loaders only, never pickle)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"config file {path} cannot be read: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data
