"""The shape of a training run, declared once: N policies, K groups, iterations, steps per
policy per iteration (T) and the seed.

Every front end derives its declaration from `RUN_SHAPE` instead of writing its own: the
`cgrpo train`/`train-sim` flags (cli/args.py), the learner's and the workers' ROS parameters
(nodes/learner.py, nodes/rollout_worker.py), the launch arguments (launch/train_sim*.launch.py)
and `cgrpo bench`'s CGRPO runs. `CGRPOConfig` keeps `num_policies`, `num_groups` and `seed`
because the algorithm reads them; `RunShape.config` is the only place they are filled from
a run's shape, and `config.RUN_SHAPE_CONFIG_FIELDS` names them so that no other source (a
config file, a `cgrpo.<field>` parameter) can set them behind the shape's back.

Only the standard library is imported: the CLI and the launch files read this at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RunShapeError(ValueError):
    """A run-shape value outside its range; the message names the field (or flag) and range."""


@dataclass(frozen=True)
class ShapeField:
    """One run-shape parameter: its name (ROS parameter, launch argument, RunShape field), its
    `cgrpo` flag, default, inclusive integer range and what it means."""

    name: str
    flag: str
    default: int
    low: int
    high: int
    help: str

    @property
    def dest(self) -> str:
        """The argparse attribute of the flag (`--steps-per-iteration` -> steps_per_iteration)."""
        return self.flag.removeprefix("--").replace("-", "_")

    def check(self, value: Any, label: str | None = None) -> int:
        """`value` if it is an int in range, else RunShapeError naming `label` (the field)."""
        label = label or self.name
        if isinstance(value, bool) or not isinstance(value, int):
            raise RunShapeError(
                f"{label}={value!r} must be an integer in [{self.low}, {self.high}]"
            )
        if not self.low <= value <= self.high:
            raise RunShapeError(
                f"{label}={value} is outside the allowed range [{self.low}, {self.high}]"
            )
        return value


MAX_POLICIES = 1024
RUN_SHAPE: tuple[ShapeField, ...] = (
    ShapeField("num_policies", "--policies", 2, 1, MAX_POLICIES, "N policies trained together."),
    ShapeField("num_groups", "--groups", 2, 1, MAX_POLICIES, "K k-means groups (K <= N)."),
    ShapeField(
        "iterations", "--iterations", 25, 1, 10**9,
        "CGRPO iterations (the run ends at this policy version).",
    ),
    ShapeField(
        "steps_per_iteration", "--steps-per-iteration", 2048, 1, 10**7,
        "Steps per policy per iteration (T).",
    ),
    ShapeField(
        "seed", "--seed", 0, 0, 2**31 - 1,
        "Seed of the update, of the environments and of action sampling.",
    ),
)  # fmt: skip
SHAPE_FIELDS = {field.name: field for field in RUN_SHAPE}
WORKER_SHAPE_FIELDS = ("num_policies", "steps_per_iteration", "seed")
"""What a rollout worker must agree on with the learner (the others are the learner's own)."""


@dataclass(frozen=True, kw_only=True)
class RunShape:
    """A validated run shape (defaults: RUN_SHAPE's)."""

    num_policies: int = SHAPE_FIELDS["num_policies"].default
    num_groups: int = SHAPE_FIELDS["num_groups"].default
    iterations: int = SHAPE_FIELDS["iterations"].default
    steps_per_iteration: int = SHAPE_FIELDS["steps_per_iteration"].default
    seed: int = SHAPE_FIELDS["seed"].default

    def __post_init__(self) -> None:
        for field in RUN_SHAPE:  # K <= N is CGRPOConfig's check (it owns the clustering)
            field.check(getattr(self, field.name))

    @classmethod
    def from_flags(cls, args: Any) -> RunShape:
        """The shape of parsed `cgrpo` flags; an error names the flag, as the user typed it."""
        return cls(**{f.name: f.check(getattr(args, f.dest), f.flag) for f in RUN_SHAPE})

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RunShape:
        """The shape of node parameters (name -> value); the other entries are ignored."""
        return cls(**{field.name: values[field.name] for field in RUN_SHAPE})

    @property
    def env_steps_per_iteration(self) -> int:
        return self.num_policies * self.steps_per_iteration

    def values(self, names: tuple[str, ...] | None = None) -> dict[str, int]:
        """name -> value of the fields `names` (default: all), e.g. as node parameters."""
        return {name: getattr(self, name) for name in (names or tuple(SHAPE_FIELDS))}

    def config_fields(self) -> dict[str, int]:
        """What CGRPOConfig takes from the shape (config.RUN_SHAPE_CONFIG_FIELDS)."""
        return {"num_policies": self.num_policies, "num_groups": self.num_groups, "seed": self.seed}
