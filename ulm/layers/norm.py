"""Normalisation layers: RMSNorm (Llama family) and LayerNorm (for variants), both on torch's fused kernels.

Low-precision inputs are normalised in fp32 and cast back, as HF's LlamaRMSNorm does, so bf16 runs
round the same way the reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ulm.config import ModelConfig


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        y = F.rms_norm(x.float(), self.weight.shape, None, self.eps)
        return self.weight * y.to(x.dtype)


class LayerNorm(nn.Module):
    """Mean-centred normalisation with weight and bias."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        y = F.layer_norm(x.float(), self.weight.shape, self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)


def build_norm(config: ModelConfig) -> nn.Module:
    """The norm the config names."""
    if config.norm == "layernorm":
        return LayerNorm(config.dim, config.norm_eps)
    return RMSNorm(config.dim, config.norm_eps)
