"""The pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

from __future__ import annotations

import torch
from torch import nn

from ulm.config import ModelConfig
from ulm.layers.attention import Attention, AttnPlan
from ulm.layers.mlp import build_mlp
from ulm.layers.norm import build_norm


class Block(nn.Module):
    """One transformer layer."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = build_norm(config)
        self.attn = Attention(config, layer)
        self.mlp_norm = build_norm(config)
        self.mlp = build_mlp(config)

    def forward(self, x: torch.Tensor, plan: AttnPlan) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), plan)  # [B, T, D]
        return x + self.mlp(self.mlp_norm(x))  # [B, T, D]
