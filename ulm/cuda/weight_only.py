"""Weight-only int8 and int4 linears for the CUDA path, and the module swap that installs them.

- `CudaInt8Linear`: int8 weights [N, K], one bf16 scale per output row (symmetric absmax, as
  `ulm.quant.Int8Linear`), computed as (x·W_bf16ᵀ)·s so that Inductor fuses the dequantisation into the
  matmul's reads (`GraphDecoder(compile=True)`, gpt-fast's recipe). It is for compiled decoding: eagerly the
  cast writes a bf16 copy of the weight every call, and torch's own `_weight_int8pack_mm` on CUDA measured
  slower still (SmolLM2-135M shape, H100: 150 tok/s against bf16's 350).
- `CudaInt4Linear`: 4 bits per weight in groups of 32 along K, w = (q − 8)·scale + zero (the format of
  `ulm.quant.Int4Weight`, quantised by `ulm.quant.int4_from_float`), packed for torch's tinygemm kernel
  (`_convert_weight_to_int4pack` / `_weight_int4pack_mm`, CUDA sm80+); scales and zeros [K/32, N, 2] bf16.
- `quantize_for_cuda(model, scheme)` swaps every `nn.Linear` (the tied LM head gets its own copy; the
  embedding keeps its bf16 table) in place.

`pack_int4` and `int4_scales_and_zeros` are plain tensor code and are tested on the CPU; the kernels run
where CUDA is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ulm.quant import GROUP, Int4Weight, int4_from_float

SCHEMES = ("int8", "int4")


class CudaInt8Linear(nn.Module):
    """y = x @ (W·s)ᵀ (+ b): W int8 [N, K], s bf16 [N]; x bf16 [..., K] → [..., N]."""

    def __init__(self, weight: Tensor, scales: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)

    @classmethod
    def quantize(cls, linear: nn.Linear) -> CudaInt8Linear:
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)  # [N]
        q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)  # [N, K]
        dtype = linear.weight.dtype
        bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        return cls(q, scale.to(dtype), bias)

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight.to(x.dtype)) * self.scales  # [..., N]
        return y if self.bias is None else y + self.bias


def inner_k_tiles(k: int) -> int:
    """tinygemm's innerKTiles for a K: the largest of 8, 4, 2 with K divisible by 16 times it."""
    for tiles in (8, 4, 2):
        if k % (16 * tiles) == 0:
            return tiles
    raise ValueError(f"an int4 weight needs K divisible by 32, got {k}")


def pack_int4(q: Tensor) -> Tensor:
    """Values 0..15 int [N, K] → uint8 [N, K/2], two per byte, even columns in the high nibble (the input
    `_convert_weight_to_int4pack` takes)."""
    q = q.to(torch.uint8)
    return (q[:, ::2] << 4) | q[:, 1::2]


def int4_scales_and_zeros(w: Int4Weight, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """tinygemm's qScaleAndZeros [K/32, N, 2] = (scale, zero) per group, from scale, zero [N, K/32]."""
    return torch.stack([w.scale.t(), w.zero.t()], dim=-1).to(dtype).contiguous()


class CudaInt4Linear(nn.Module):
    """y = x @ Wᵀ (+ b) with W in 4 bits (tinygemm); x bf16 [..., K] → [..., N]."""

    def __init__(self, packed: Tensor, scales_and_zeros: Tensor, shape: tuple[int, int], bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = shape
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("bias", bias)

    @staticmethod
    def fits(linear: nn.Linear) -> bool:
        n, k = linear.weight.shape
        return k % GROUP == 0 and n % 8 == 0

    @classmethod
    def quantize(cls, linear: nn.Linear) -> CudaInt4Linear:
        w4 = int4_from_float(linear.weight.detach())
        n, k = w4.shape
        packed = torch._convert_weight_to_int4pack(pack_int4(w4.q).to(linear.weight.device), inner_k_tiles(k))
        scales = int4_scales_and_zeros(w4, linear.weight.dtype).to(linear.weight.device)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(packed, scales, (n, k), bias)

    def forward(self, x: Tensor) -> Tensor:
        y = torch._weight_int4pack_mm(x.reshape(-1, self.in_features), self.packed, GROUP,
                                      self.scales_and_zeros)  # [M, N]
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


def quantize_for_cuda(model: nn.Module, scheme: str) -> nn.Module:
    """Swap every `nn.Linear` of `model` for its `scheme` ("int8" or "int4") module, in place; an int4
    linear whose shape tinygemm cannot take becomes int8."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown CUDA weight scheme '{scheme}' ({' or '.join(SCHEMES)})")
    targets = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    for name, linear in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new: nn.Module
        if scheme == "int4" and CudaInt4Linear.fits(linear):
            new = CudaInt4Linear.quantize(linear)
        else:
            new = CudaInt8Linear.quantize(linear)
        setattr(parent, attr, new)
    return model
