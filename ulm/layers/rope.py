"""Rotary position embedding in HF's rotate-half convention, with the long-context scalings of `RopeScaling`.

- `inv_freq_and_scale(head_dim, theta, scaling)` computes the per-pair inverse frequencies and the factor
  cos/sin are multiplied by (YaRN's attention temperature; 1 otherwise), following HF's
  `modeling_rope_utils` formulas so checkpoints behave as they do there:
  none; linear (positions divided by `factor`); ntk (static NTK-aware: base · factor^(d/(d-2)), the
  dynamic variant fixed at the full extension, since a static KV cache cannot re-rotate stored keys);
  yarn (per-dimension blend of interpolation and extrapolation between beta_fast and beta_slow
  rotations, cos/sin scaled by 0.1·ln(factor) + 1 unless attn_factor is given); llama3 (frequency bands).
  `freq_factors` (llama.cpp's rope_freqs) then divide each pair's frequency.
- `RotaryEmbedding` precomputes cos/sin tables [max_len, head_dim] once; a forward slices them (a view).
- `apply_rope(x, cos, sin)`: x · cos + rotate_half(x) · sin, where rotate_half(x) = (-x₂, x₁) over the
  two halves of the head dimension.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ulm.config import RopeScaling


def _yarn_inv_freq(base_inv: torch.Tensor, head_dim: int, theta: float, s: RopeScaling) -> torch.Tensor:
    assert s.original_max_seq_len is not None

    def correction_dim(n_rot: float) -> float:
        return head_dim * math.log(s.original_max_seq_len / (n_rot * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp  # 1 = keep the original frequency, 0 = fully interpolated
    return (base_inv / s.factor) * (1 - extrapolate) + base_inv * extrapolate


def _llama3_inv_freq(base_inv: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    assert s.original_max_seq_len is not None
    low_wavelen = s.original_max_seq_len / s.low_freq_factor
    high_wavelen = s.original_max_seq_len / s.high_freq_factor
    wavelen = 2 * math.pi / base_inv
    inv = torch.where(wavelen > low_wavelen, base_inv / s.factor, base_inv)
    smooth = (s.original_max_seq_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * inv / s.factor + smooth * inv
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, inv)


def inv_freq_and_scale(head_dim: int, theta: float, scaling: RopeScaling) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [head_dim // 2] (fp32) and the cos/sin multiplier for this scaling."""
    inv, scale = _scaled(head_dim, theta, scaling)
    if scaling.freq_factors is not None:
        if len(scaling.freq_factors) != head_dim // 2:
            raise ValueError(f"rope freq_factors has {len(scaling.freq_factors)} entries, head_dim {head_dim} "
                             f"needs {head_dim // 2}")
        inv = inv / torch.tensor(scaling.freq_factors, dtype=torch.float32)
    return inv, scale


def _scaled(head_dim: int, theta: float, scaling: RopeScaling) -> tuple[torch.Tensor, float]:
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim  # [hd/2]
    if scaling.kind == "ntk":
        theta = theta * scaling.factor ** (head_dim / (head_dim - 2))
    base_inv = 1.0 / (theta ** exponents)
    if scaling.kind == "linear":
        return base_inv / scaling.factor, 1.0
    if scaling.kind == "yarn":
        attn = scaling.attn_factor
        if attn is None:
            attn = 0.1 * math.log(scaling.factor) + 1.0 if scaling.factor > 1 else 1.0
        return _yarn_inv_freq(base_inv, head_dim, theta, scaling), attn
    if scaling.kind == "llama3":
        return _llama3_inv_freq(base_inv, scaling), 1.0
    return base_inv, 1.0  # none, ntk


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions 0..max_len-1, computed once (fp32 math, stored in the model dtype)."""

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, head_dim: int, max_len: int, theta: float, scaling: RopeScaling | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.head_dim, self.max_len, self.theta = head_dim, max_len, theta
        self.scaling = scaling or RopeScaling()
        if torch.empty(0, device=device).is_meta:  # a model built on the meta device: tables come with `rebuild`
            cos = sin = torch.empty(max_len, head_dim, dtype=dtype, device=device)
        else:
            cos, sin = self._tables(dtype, device)
        self.register_buffer("cos", cos, persistent=False)  # [max_len, hd]
        self.register_buffer("sin", sin, persistent=False)  # [max_len, hd]

    def _tables(self, dtype: torch.dtype, device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.device("cpu"):  # real numbers even while a model is built on the meta device
            inv_freq, scale = inv_freq_and_scale(self.head_dim, self.theta, self.scaling)  # [hd/2]
            pos = torch.arange(self.max_len, dtype=torch.float32)  # [L]
            freqs = torch.outer(pos, inv_freq)  # [L, hd/2]
            emb = torch.cat((freqs, freqs), dim=-1)  # [L, hd]
        return (emb.cos() * scale).to(dtype=dtype, device=device), (emb.sin() * scale).to(dtype=dtype, device=device)

    def rebuild(self, dtype: torch.dtype, device: torch.device | str) -> None:
        """Recompute the tables on a real device (after building the model on the meta device)."""
        self.cos, self.sin = self._tables(dtype, device)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x₁, x₂) → (-x₂, x₁) over the last dimension's halves."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., T, hd] by the angles whose cos/sin [..., T, hd] broadcast against it."""
    return x * cos + rotate_half(x) * sin
