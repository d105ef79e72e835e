"""ONNX export of a policy: the training side of the policy artifact.

The runtime side (metadata, validation, onnxruntime runner) lives in `policy_artifact`,
which imports no torch, so that workers and the policy server start fast and deployment
depends on nothing of training.
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

from cgrpo_ros.core.policy import GaussianPolicy
from cgrpo_ros.core.policy_artifact import PolicyArtifactError, PolicyMetadata

OPSET = 17


class _ExportedPolicy(nn.Module):
    def __init__(self, policy: GaussianPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.policy(obs)
        # Broadcast to [batch, act_dim]: a graph output that is a bare constant loses its name.
        return mean, self.policy.log_std.expand_as(mean)


def export_policy_onnx(policy: GaussianPolicy, metadata: PolicyMetadata) -> bytes:
    """Serialise a policy (normaliser included) to ONNX bytes carrying `metadata`."""
    if (metadata.obs_dim, metadata.act_dim) != (policy.obs_dim, policy.act_dim):
        raise PolicyArtifactError(
            f"metadata sizes obs={metadata.obs_dim}, act={metadata.act_dim} differ from the "
            f"policy's obs={policy.obs_dim}, act={policy.act_dim}"
        )
    buffer = io.BytesIO()
    module = _ExportedPolicy(policy).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (torch.zeros(1, policy.obs_dim),),
            buffer,  # type: ignore[arg-type]  # a binary stream works; the stub says path
            input_names=["obs"],
            output_names=["action_mean", "log_std"],
            dynamic_axes={
                "obs": {0: "batch"},
                "action_mean": {0: "batch"},
                "log_std": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "cgrpo_ros"
    data: bytes = model.SerializeToString()
    return data
