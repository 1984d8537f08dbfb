"""ulm.cuda.weight_only's tensor code on the CPU: the int4 packing tinygemm takes, its scale/zero layout, the
int8 fallback's numbers, and the module swap.

Run: .venv/bin/python -m pytest tests/ulm/cuda/test_weight_only.py -q
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ulm.cuda.weight_only import (
    CudaInt4Linear,
    CudaInt8Linear,
    inner_k_tiles,
    int4_scales_and_zeros,
    pack_int4,
    quantize_for_cuda,
)
from ulm.quant import GROUP, int4_from_float


def test_pack_int4_puts_even_columns_in_the_high_nibble() -> None:
    q = torch.tensor([[1, 2, 15, 0], [7, 8, 9, 10]])
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8
    assert packed.tolist() == [[0x12, 0xF0], [0x78, 0x9A]]


def test_scales_and_zeros_dequantise_to_the_int4_weight() -> None:
    torch.manual_seed(0)
    w4 = int4_from_float(torch.randn(16, 64))
    sz = int4_scales_and_zeros(w4, torch.float32)  # [K/32, N, 2]
    assert sz.shape == (64 // GROUP, 16, 2)
    q = w4.q.view(16, 2, GROUP).float()  # [N, G, 32]
    rebuilt = (q - 8) * sz[..., 0].t()[..., None] + sz[..., 1].t()[..., None]
    torch.testing.assert_close(rebuilt.view(16, 64), w4.dequantize())


@pytest.mark.parametrize(("k", "tiles"), [(1536, 8), (576, 4), (96, 2)])
def test_inner_k_tiles_is_the_largest_that_divides_k(k: int, tiles: int) -> None:
    assert inner_k_tiles(k) == tiles


def test_inner_k_tiles_refuses_k_not_a_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        inner_k_tiles(48)


def test_int8_linear_is_within_its_rounding_of_the_float_one() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 24, bias=True)
    q = CudaInt8Linear.quantize(linear)
    assert q.weight.dtype == torch.int8 and q.scales.shape == (24,)
    x = torch.randn(3, 5, 64)
    want = linear(x)
    got = q(x)
    assert got.shape == (3, 5, 24)
    step = q.scales.abs().max() / 2  # at most half a quantisation step per weight
    assert (got - want).abs().max() <= step * x.abs().sum(-1).max()


def test_quantize_for_cuda_swaps_every_linear_and_refuses_an_unknown_scheme() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 12))  # N = 12: no int4 tiles for it
    assert CudaInt4Linear.fits(model[0]) and not CudaInt4Linear.fits(model[1])
    quantize_for_cuda(model, "int8")
    assert all(isinstance(m, CudaInt8Linear) for m in model)
    with pytest.raises(ValueError, match="unknown CUDA weight scheme"):
        quantize_for_cuda(nn.Sequential(nn.Linear(4, 4)), "int3")
