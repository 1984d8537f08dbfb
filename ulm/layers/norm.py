"""Normalisation layers: RMSNorm (Llama family, on one 2-norm reduction: see `rms_norm`) and LayerNorm (for
variants, on torch's fused kernel).

Low-precision inputs are normalised in fp32 and cast back, as HF's LlamaRMSNorm does, so bf16 runs
round the same way the reference does. While autograd records a trainable norm (training; `build_model`
freezes inference models), it runs on `F.rms_norm`, which has a backward and which torch.compile fuses.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ulm.config import ModelConfig
from ulm.kernels.native import library


@functools.lru_cache(maxsize=16)
def _eps_tensor(eps: float, device: torch.device) -> torch.Tensor:
    return torch.tensor(eps, dtype=torch.float32, device=device)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """x / sqrt(mean(x²) + eps) (· weight) over the last dim of fp32 x [..., D], into `out` when given (fp32
    or bf16: the norm and a matmul's input cast in one pass).

    With a weight, contiguous CPU tensors run µLM's native kernel (one pass: ~2 µs for a decode row where
    the torch ops below take ~10); otherwise one 2-norm reduction and two multiplies (torch 2.13's
    F.rms_norm computes the same on CPU 1.5× slower for one row and ~15× slower for 512 rows, measured).
    All agree to fp32 rounding (~2e-6)."""
    D = x.shape[-1]
    lib = library() if weight is not None and x.device.type == "cpu" else None
    if lib is not None and x.dtype == weight.dtype == torch.float32 and x.is_contiguous() and weight.is_contiguous():
        y = torch.empty_like(x) if out is None else out
        if y.dtype in (torch.float32, torch.bfloat16) and y.is_contiguous() and y.shape == x.shape:
            lib.ulm_rms_norm(x.data_ptr(), x.numel() // D, D, weight.data_ptr(), eps, y.data_ptr(),
                             y.dtype == torch.bfloat16)
            return y
    n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # [..., 1]: sqrt(Σx²)
    inv = torch.addcmul(_eps_tensor(eps, x.device), n, n, value=1 / D).rsqrt_()  # 1 / sqrt(mean(x²) + eps)
    y = x * inv
    y = y if weight is None else y.mul_(weight)
    return y if out is None else out.copy_(y)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.weight.requires_grad:  # training: the native kernel has no backward
            if x.dtype == torch.float32:
                return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
            return self.weight * F.rms_norm(x.float(), self.weight.shape, None, self.eps).to(x.dtype)
        if x.dtype == torch.float32:
            return rms_norm(x, self.weight, self.eps)
        y = rms_norm(x.float(), None, self.eps)
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
