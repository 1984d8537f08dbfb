"""The GGUF block-quant formats the native kernels run (Q4_K, Q5_K, Q6_K, Q8_0, Q5_0) and their reference
dequantisation in torch.

`FORMATS` maps each GGML type name to its `BlockFormat` (weights and bytes per block, GGML id).
`dequantize(ggml_type, blocks, K)` turns a tensor's GGUF rows (uint8 [N, K / block · bytes]) into its fp32
weight [N, K], bit for bit what gguf's numpy dequantisation gives (each product rounded once); it is the
reference the kernels are tested against and what the torch fallback runs. The block layouts are described
in ulm/kernels/ulm_kquant.c.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class BlockFormat:
    """One GGUF block type: `block` weights stored in `bytes` bytes; `ggml_id` is its GGML type number."""

    name: str
    ggml_id: int
    block: int
    bytes: int

    @property
    def bits_per_weight(self) -> float:
        return self.bytes * 8 / self.block

    def row_bytes(self, k: int) -> int:
        """Bytes of one row of K weights (K a multiple of the block)."""
        return k // self.block * self.bytes


FORMATS = {f.name: f for f in (BlockFormat("Q5_0", 6, 32, 22), BlockFormat("Q8_0", 8, 32, 34),
                               BlockFormat("Q4_K", 12, 256, 144), BlockFormat("Q5_K", 13, 256, 176),
                               BlockFormat("Q6_K", 14, 256, 210))}


def block_format(ggml_type: str, k: int) -> BlockFormat:
    """The format of `ggml_type` for rows of K weights; ValueError for other types or a K off the block."""
    fmt = FORMATS.get(ggml_type)
    if fmt is None:
        raise ValueError(f"GGML type {ggml_type} has no native block kernel (supported: {', '.join(FORMATS)})")
    if k <= 0 or k % fmt.block:
        raise ValueError(f"{ggml_type} rows hold a multiple of {fmt.block} weights, not {k}")
    return fmt


def _half(b: Tensor, at: int) -> Tensor:
    """The little-endian f16 at byte `at` of every block, as fp32. b: uint8 [..., bytes] → [...]."""
    return b[..., at:at + 2].contiguous().view(torch.float16)[..., 0].float()


def _nibbles(qs: Tensor) -> Tensor:
    """uint8 [..., n] → [..., 2, n]: the low nibbles, then the high ones."""
    return torch.stack((qs & 15, qs >> 4), dim=-2)


def _scales_mins(s: Tensor) -> tuple[Tensor, Tensor]:
    """Q4_K/Q5_K: the 12 packed scale bytes [..., 12] → the 6-bit scales and mins [..., 8] each."""
    d, m, md = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = torch.cat((d & 63, (md & 15) | ((d >> 2) & 0x30)), dim=-1)
    mn = torch.cat((m & 63, (md >> 4) | ((m >> 2) & 0x30)), dim=-1)
    return sc.float(), mn.float()


def _k_quant(b: Tensor, five: bool) -> Tensor:
    """Q4_K/Q5_K blocks [N, S, bytes] → weights [N, S, 256]."""
    n, s = b.shape[:2]
    sc, mn = _scales_mins(b[..., 4:16])  # [N, S, 8]
    qs = b[..., 48:176] if five else b[..., 16:144]
    q = _nibbles(qs.reshape(n, s, 4, 32)).reshape(n, s, 8, 32)  # sub-block j = 2c + nibble
    if five:
        bits = torch.arange(8, dtype=torch.uint8).view(8, 1)
        q = q | (((b[..., 16:48].unsqueeze(-2) >> bits) & 1) << 4)  # bit j of qh[i]: weight 32j + i
    scale = (_half(b, 0)[..., None] * sc)[..., None]  # d·sc [N, S, 8, 1], exact in fp32
    offset = (_half(b, 2)[..., None] * mn)[..., None]  # dmin·m
    return (scale * q.float() - offset).reshape(n, s, 256)


def _q6_k(b: Tensor) -> Tensor:
    """Q6_K blocks [N, S, 210] → weights [N, S, 256]."""
    n, s = b.shape[:2]
    lo = _nibbles(b[..., 0:128].reshape(n, s, 2, 64)).reshape(n, s, 256)  # weight 128h + 64·nibble + i
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8).view(4, 1)
    hi = ((b[..., 128:192].reshape(n, s, 2, 1, 32) >> shifts) & 3).reshape(n, s, 256)  # weight 128h + 32f + i
    q = (lo | (hi << 4)).float() - 32
    scale = _half(b, 208)[..., None] * b[..., 192:208].contiguous().view(torch.int8).float()  # d·sc [N, S, 16]
    return (scale[..., None] * q.view(n, s, 16, 16)).reshape(n, s, 256)


def _q8_0(b: Tensor) -> Tensor:
    """Q8_0 blocks [N, G, 34] → weights [N, G, 32]."""
    return _half(b, 0)[..., None] * b[..., 2:].contiguous().view(torch.int8).float()


def _q5_0(b: Tensor) -> Tensor:
    """Q5_0 blocks [N, G, 22] → weights [N, G, 32]."""
    n, g = b.shape[:2]
    qh = sum(b[..., 2 + i].long() << (8 * i) for i in range(4))  # [N, G]: bit i is weight i's fifth bit
    hi = (qh[..., None] >> torch.arange(32)) & 1  # [N, G, 32]
    lo = _nibbles(b[..., 6:22]).reshape(n, g, 32)  # weight i < 16: low nibble of qs[i]; 16 + i: its high one
    return _half(b, 0)[..., None] * ((lo.long() | (hi << 4)) - 16).float()


_DEQUANTIZE = {"Q4_K": lambda b: _k_quant(b, five=False), "Q5_K": lambda b: _k_quant(b, five=True),
               "Q6_K": _q6_k, "Q8_0": _q8_0, "Q5_0": _q5_0}


def dequantize(ggml_type: str, blocks: Tensor | np.ndarray, k: int) -> Tensor:
    """GGUF rows uint8 [N, K / block · bytes] of `ggml_type` → the fp32 weight [N, K]."""
    fmt = block_format(ggml_type, k)
    rows = torch.as_tensor(np.ascontiguousarray(blocks)) if isinstance(blocks, np.ndarray) else blocks.contiguous()
    if rows.dtype != torch.uint8 or rows.dim() != 2 or rows.shape[1] != fmt.row_bytes(k):
        raise ValueError(f"{ggml_type} rows of {k} weights are uint8 [N, {fmt.row_bytes(k)}], not "
                         f"{rows.dtype} {tuple(rows.shape)}")
    n = rows.shape[0]
    return _DEQUANTIZE[ggml_type](rows.view(n, k // fmt.block, fmt.bytes)).reshape(n, k)
