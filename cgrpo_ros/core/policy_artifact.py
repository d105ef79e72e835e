"""The policy artifact at run time: metadata, validation and the onnxruntime runner.

No torch here (the export is in `onnx_export`): workers and the policy server import this.

Contract (docs/architecture.md): input `obs` [batch, obs_dim] raw float32; outputs
`action_mean` [batch, act_dim] (f_theta(s) with the observation normalisation inside the
graph) and `log_std` [batch, act_dim]; metadata_props keys prefixed `cgrpo.`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

FORMAT_VERSION = 1
MAX_MODEL_BYTES = 64 * 1024**2  # a policy MLP is kilobytes; anything near this is not ours
_PREFIX = "cgrpo."


class PolicyArtifactError(ValueError):
    """An ONNX policy file or message is unusable; the message says what differs."""


@dataclass(frozen=True, kw_only=True)
class PolicyMetadata:
    policy_id: int
    policy_version: int
    obs_dim: int
    act_dim: int
    obs_names: list[str]
    action_names: list[str]
    action_low: list[float]
    action_high: list[float]
    task: str
    config_hash: str = ""
    obs_layout_version: int = 1
    action_mode: str = "joint_position"
    """How the policy server turns an action into joint targets (ReachTask.joint_target)."""
    format_version: int = FORMAT_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            ("obs_names", len(self.obs_names), self.obs_dim),
            ("action_names", len(self.action_names), self.act_dim),
            ("action_low", len(self.action_low), self.act_dim),
            ("action_high", len(self.action_high), self.act_dim),
        ]
        for name, got, want in checks:
            if got != want:
                raise PolicyArtifactError(f"metadata {name} has {got} entries; expected {want}")
        for j, (low, high) in enumerate(zip(self.action_low, self.action_high, strict=True)):
            if not low < high:
                raise PolicyArtifactError(
                    f"metadata action bounds of {self.action_names[j]!r}: low={low} must be "
                    f"below high={high}"
                )

    def to_props(self) -> dict[str, str]:
        props = {
            "format_version": str(self.format_version),
            "policy_id": str(self.policy_id),
            "policy_version": str(self.policy_version),
            "obs_dim": str(self.obs_dim),
            "act_dim": str(self.act_dim),
            "obs_names": json.dumps(self.obs_names),
            "action_names": json.dumps(self.action_names),
            "action_low": json.dumps(self.action_low),
            "action_high": json.dumps(self.action_high),
            "task": self.task,
            "config_hash": self.config_hash,
            "obs_layout_version": str(self.obs_layout_version),
            "action_mode": self.action_mode,
        }
        props.update(self.extra)
        return {_PREFIX + k: v for k, v in props.items()}

    def signed_claims(self) -> dict[str, object]:
        """The metadata a signature vouches for (cgrpo_ros/core/signing.py): which policy and
        version, for which task, what it observes and commands, trained with which config.
        The ONNX bytes' SHA-256 (which covers every metadata entry) is added by the signer;
        these copies let a receiver check the claims before it even parses the model."""
        return {
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "task": self.task,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "obs_names": list(self.obs_names),
            "action_names": list(self.action_names),
            "action_mode": self.action_mode,
            "obs_layout_version": self.obs_layout_version,
            "config_hash": self.config_hash,
        }

    @staticmethod
    def from_props(props: dict[str, str]) -> PolicyMetadata:
        values = {k[len(_PREFIX) :]: v for k, v in props.items() if k.startswith(_PREFIX)}
        try:
            version = int(values.pop("format_version"))
            if version != FORMAT_VERSION:
                raise PolicyArtifactError(
                    f"policy format_version={version}; this build reads {FORMAT_VERSION}"
                )
            meta = PolicyMetadata(
                policy_id=int(values.pop("policy_id")),
                policy_version=int(values.pop("policy_version")),
                obs_dim=int(values.pop("obs_dim")),
                act_dim=int(values.pop("act_dim")),
                obs_names=[str(x) for x in json.loads(values.pop("obs_names"))],
                action_names=[str(x) for x in json.loads(values.pop("action_names"))],
                action_low=[float(x) for x in json.loads(values.pop("action_low"))],
                action_high=[float(x) for x in json.loads(values.pop("action_high"))],
                task=values.pop("task"),
                config_hash=values.pop("config_hash", ""),
                obs_layout_version=int(values.pop("obs_layout_version", "1")),
                action_mode=values.pop("action_mode", "joint_position"),
                extra=values,
            )
        except KeyError as exc:
            raise PolicyArtifactError(f"policy metadata lacks the key cgrpo.{exc.args[0]}") from exc
        except (ValueError, TypeError) as exc:
            if isinstance(exc, PolicyArtifactError):
                raise
            raise PolicyArtifactError(f"policy metadata is malformed: {exc}") from exc
        return meta


class OnnxPolicy:
    """A validated policy artifact run by onnxruntime (workers and the policy server)."""

    def __init__(self, model_bytes: bytes, *, source: str = "<bytes>") -> None:
        if len(model_bytes) > MAX_MODEL_BYTES:
            raise PolicyArtifactError(
                f"policy model {source} is {len(model_bytes)} bytes, above the "
                f"{MAX_MODEL_BYTES} byte limit"
            )
        options = ort.SessionOptions()
        # One thread: a small MLP is faster single-threaded and leaves cores to the sim.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise PolicyArtifactError(
                f"policy model {source} is not a valid ONNX model: {exc}"
            ) from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = PolicyMetadata.from_props(dict(meta))
        self._check_signature(source)
        self.source = source
        zero = np.zeros((1, self.metadata.obs_dim), dtype=np.float32)
        self.log_std = np.asarray(self.session.run(["log_std"], {"obs": zero})[0][0], np.float32)
        self._std = np.exp(self.log_std)  # state-free: computed once, not at every step
        self._run = self.session.run
        self.action_low = np.asarray(self.metadata.action_low, dtype=np.float32)
        self.action_high = np.asarray(self.metadata.action_high, dtype=np.float32)

    @staticmethod
    def from_file(path: Path) -> OnnxPolicy:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise PolicyArtifactError(f"policy model {path} cannot be read: {exc}") from exc
        if size > MAX_MODEL_BYTES:
            raise PolicyArtifactError(
                f"policy model {path} is {size} bytes, above the {MAX_MODEL_BYTES} byte limit"
            )
        return OnnxPolicy(path.read_bytes(), source=str(path))

    def _check_signature(self, source: str) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if set(inputs) != {"obs"} or not {"action_mean", "log_std"} <= set(outputs):
            raise PolicyArtifactError(
                f"policy model {source} has inputs {sorted(inputs)} and outputs "
                f"{sorted(outputs)}; expected input ['obs'] and outputs "
                "['action_mean', 'log_std']"
            )
        obs_shape = inputs["obs"].shape
        mean_shape = outputs["action_mean"].shape
        if obs_shape[-1] != self.metadata.obs_dim or mean_shape[-1] != self.metadata.act_dim:
            raise PolicyArtifactError(
                f"policy model {source}: graph sizes obs={obs_shape} action_mean={mean_shape} "
                f"differ from metadata obs_dim={self.metadata.obs_dim}, "
                f"act_dim={self.metadata.act_dim}"
            )

    def action_mean(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """f_theta(s) for a [batch, obs_dim] or [obs_dim] observation."""
        batch = np.asarray(obs, dtype=np.float32).reshape(-1, self.metadata.obs_dim)
        mean = self.session.run(["action_mean"], {"obs": batch})[0]
        result: npt.NDArray[np.float32] = np.asarray(mean, dtype=np.float32)
        return result.reshape(*np.shape(obs)[:-1], -1)

    def sample(
        self, obs: npt.NDArray[np.float32], rng: np.random.Generator
    ) -> npt.NDArray[np.float32]:
        """Training-time action: mean + exp(log_std) * N(0, I), not clipped.

        The one-observation case (every rollout step) skips `action_mean`'s reshapes: the
        collection loop spends more time here than in the physics otherwise (issue 14). Both
        paths draw the same noise and give the same numbers."""
        if np.ndim(obs) == 1:
            row = np.asarray(obs, dtype=np.float32).reshape(1, -1)
            mean = self._run(["action_mean"], {"obs": row})[0][0]
        else:
            mean = self.action_mean(obs)
        noise = rng.standard_normal(mean.shape).astype(np.float32)
        action: npt.NDArray[np.float32] = (mean + self._std * noise).astype(np.float32)
        return action

    def deterministic_action(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Deployment action: the mean, clipped to the action bounds."""
        clipped: npt.NDArray[np.float32] = np.clip(
            self.action_mean(obs), self.action_low, self.action_high
        ).astype(np.float32)
        return clipped
