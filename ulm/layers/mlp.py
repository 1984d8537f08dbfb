"""Feed-forward layers: SwiGLU (Llama family) with gate and up fused into one matmul, and a GELU MLP.

SwiGLU: w_down(silu(x·W_gateᵀ) ⊙ x·W_upᵀ). `w_gate_up` holds rows [gate | up]; a load_state_dict pre-hook
accepts the canonical separate `w_gate`/`w_up` names. While autograd records a trainable SwiGLU (training), it
runs torch's own silu and multiply instead of the native kernel, which has no backward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ulm.config import ModelConfig
from ulm.kernels.activations import silu_mul


class SwiGLU(nn.Module):
    """Gated MLP with SiLU."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.w_gate_up = nn.Linear(dim, 2 * hidden_dim, bias=False)
        self.w_down = nn.Linear(hidden_dim, dim, bias=False)
        self._register_load_state_dict_pre_hook(self._fuse_gate_up)

    def _fuse_gate_up(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        gate, up = f"{prefix}w_gate.weight", f"{prefix}w_up.weight"
        if gate in state_dict:
            state_dict[f"{prefix}w_gate_up.weight"] = torch.cat([state_dict.pop(gate), state_dict.pop(up)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = self.w_gate_up(x)  # [B, T, 2F]
        if torch.is_grad_enabled() and gate_up.requires_grad:  # training: the native kernel has no backward
            gate, up = gate_up.split(self.hidden_dim, dim=-1)
            return self.w_down(F.silu(gate) * up)  # [B, T, D]
        return self.w_down(silu_mul(gate_up))  # [B, T, F] → [B, T, D]


class GeluMLP(nn.Module):
    """Plain two-layer MLP with GELU (tanh approximation, as GPT-2 style variants use)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w_up = nn.Linear(dim, hidden_dim, bias=False)
        self.w_down = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.gelu(self.w_up(x), approximate="tanh"))


def build_mlp(config: ModelConfig) -> nn.Module:
    """The MLP the config names."""
    if config.mlp == "gelu":
        return GeluMLP(config.dim, config.hidden_dim)
    return SwiGLU(config.dim, config.hidden_dim)
