"""Seeded random GGUF block tensors of the types ulm.kquant runs, for its tests and its benchmark.

`random_blocks(ggml_type, n, k, seed)` gives a `RawTensor` (the loader's BlockTensor shape: type, (N, K),
uint8 rows). Q8_0 and Q5_0 are quantised from random floats by the gguf package; the K-quants (which gguf
cannot quantise) are built byte by byte: random quants and packed scales, and f16 super-block scales in a
range that keeps the weights near a real model's (|w| ≲ 0.1), one row of all-zero scales included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType, quants

from ulm.kquant.formats import FORMATS

TYPES = tuple(FORMATS)


@dataclass(frozen=True)
class RawTensor:
    """One GGUF tensor's blocks as stored (satisfies ulm.quant.BlockTensor)."""

    ggml_type: str
    shape: tuple[int, int]
    blocks: np.ndarray  # uint8 [N, K / block · bytes]


def _halves(rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float, signed: bool = False) -> np.ndarray:
    """Random f16 values with magnitudes in [lo, hi), as their bytes [..., 2]."""
    values = rng.uniform(lo, hi, size=shape)
    if signed:
        values *= rng.choice([-1.0, 1.0], size=shape)
    return values.astype("<f2")[..., None].view(np.uint8)


def random_blocks(ggml_type: str, n: int, k: int, seed: int = 0) -> RawTensor:
    """A random N × K weight of `ggml_type` in GGUF rows."""
    rng = np.random.default_rng(seed)
    fmt = FORMATS[ggml_type]
    if ggml_type in ("Q8_0", "Q5_0"):
        weights = (rng.standard_normal((n, k)) * rng.uniform(0.005, 0.05, size=(n, 1))).astype(np.float32)
        rows = quants.quantize(weights, GGMLQuantizationType[ggml_type])
        return RawTensor(ggml_type, (n, k), np.ascontiguousarray(rows.reshape(n, fmt.row_bytes(k))))
    blocks = rng.integers(0, 256, size=(n, k // fmt.block, fmt.bytes), dtype=np.uint8)  # quants, packed scales
    lead = blocks.shape[:2]
    if ggml_type == "Q6_K":
        blocks[..., 208:210] = _halves(rng, lead, 1e-4, 1e-3, signed=True)  # d; the int8 scales stay random
    else:
        blocks[..., 0:2] = _halves(rng, lead, 1e-4, 2e-3)  # d
        blocks[..., 2:4] = _halves(rng, lead, 1e-4, 2e-3)  # dmin
    if n > 1:
        blocks[n // 2, :, 208:210 if ggml_type == "Q6_K" else 0:4] = 0  # a row whose blocks are all zero
    return RawTensor(ggml_type, (n, k), np.ascontiguousarray(blocks.reshape(n, fmt.row_bytes(k))))
