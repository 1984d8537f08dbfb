"""The native int4 kernel (ulm/kernels/ulm_int4.c through `Int4Linear.use_native_kernel`): the repacked
weight unpacks to the same bits, products track the dense bf16 product, a row's result does not depend on
its batch, and machines without AVX-512 VNNI keep torch's kernel.

Run: .venv/bin/python -m pytest tests/ulm/kernels/test_int4.py -q
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ulm.kernels import native
from ulm.quant import Int4Linear, bf16_gemm_native, int4_from_float


def _has_vnni() -> bool:
    lib = native.library()  # None only on a broken set-up, which tests/ulm/kernels/test_native.py reports
    return lib is not None and bool(lib.ulm_int4_vnni())


vnni = pytest.mark.skipif(not _has_vnni(), reason="no native int4 kernel here (AVX-512 VNNI or AVX2): torch's runs")


def _pair(n: int, k: int, seed: int, out_dtype: torch.dtype | None = None) -> tuple[Int4Linear, Int4Linear]:
    """The same int4 weight twice: in torch's layout, and repacked for the native kernel."""
    g = torch.Generator().manual_seed(seed)
    weight = int4_from_float(torch.randn(n, k, generator=g) * 0.05)
    torch_layout = Int4Linear.quantize(weight, out_dtype=out_dtype)
    native_layout = Int4Linear.quantize(weight, out_dtype=out_dtype)
    assert native_layout.use_native_kernel() and native_layout.layout == "vnni"
    return torch_layout, native_layout


@vnni
@pytest.mark.parametrize(("n", "k"), [(64, 32), (192, 96), (576, 1536)])
def test_the_repacked_weight_unpacks_to_the_same_bits(n: int, k: int) -> None:
    torch_layout, native_layout = _pair(n, k, seed=n + k)
    assert native_layout.packed.shape == torch_layout.packed.shape  # repacked in the same size
    assert not torch.equal(native_layout.packed, torch_layout.packed)
    assert torch.equal(native_layout.dense(), torch_layout.dense())


@vnni
@pytest.mark.parametrize("rows", [1, 3, 4, 9, 64])
def test_products_track_the_dense_bf16_product_as_closely_as_torchs_kernel(rows: int) -> None:
    torch_layout, native_layout = _pair(320, 576, seed=rows)
    x = torch.randn(rows, 576, generator=torch.Generator().manual_seed(rows)).bfloat16()
    want = F.linear(x.float(), torch_layout.dense().float())  # [rows, N] from the bf16 weight, fp32 sums
    got = native_layout.matmul(x)
    assert got.shape == (rows, 320) and got.dtype == torch.bfloat16
    err = ((got.float() - want).norm() / want.norm()).item()
    torch_err = ((torch_layout.matmul(x).float() - want).norm() / want.norm()).item()
    assert err < 0.02  # int8 activations per group of 32: measured 0.6-0.9% (torch's kernel 0.4-0.7%, bf16 out)
    assert err < 2 * torch_err + 0.005


@vnni
def test_a_rows_result_does_not_depend_on_the_other_rows_of_its_batch() -> None:
    _, lin = _pair(128, 256, seed=4)
    x = torch.randn(11, 256, generator=torch.Generator().manual_seed(9)).bfloat16()
    together = lin.matmul(x)
    for i in (0, 3, 4, 10):  # first, last of a 4-row pass, first of the next, the lone remainder
        assert torch.equal(lin.matmul(x[i:i + 1]), together[i:i + 1])
    assert torch.equal(lin.matmul(x[2:7]), together[2:7])


@vnni
def test_fp32_output_is_the_unrounded_bf16_output_and_forward_uses_it() -> None:
    _, lin = _pair(64, 64, seed=5, out_dtype=torch.float32)
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(1)).bfloat16()
    wide = lin.matmul(x, torch.float32)
    assert wide.dtype == torch.float32 and torch.equal(wide.bfloat16(), lin.matmul(x))
    assert torch.equal(lin(x), wide)


@vnni
def test_many_rows_take_the_dense_path_where_a_bf16_gemm_is_and_agree_with_the_kernel() -> None:
    _, lin = _pair(128, 128, seed=6)
    x = torch.randn(300, 128, generator=torch.Generator().manual_seed(2)).bfloat16()
    kernel = lin.matmul(x)
    if not bf16_gemm_native():  # AVX2: the integer kernel beats an fp32 GEMM at every size, so it runs
        assert torch.equal(lin(x), kernel)
    dense = F.linear(x, lin.dense())  # what ≥ NATIVE_DENSE_MIN_ROWS rows run where the CPU has a bf16 GEMM
    if bf16_gemm_native():
        assert torch.equal(lin(x), dense)
    assert ((kernel.float() - dense.float()).norm() / dense.float().norm()).item() < 0.02


def test_shapes_or_dtypes_the_kernel_does_not_take_keep_torchs_layout() -> None:
    g = torch.Generator().manual_seed(8)
    odd = Int4Linear.quantize(int4_from_float(torch.randn(48, 64, generator=g)))  # N % 64 != 0
    wide = Int4Linear.quantize(int4_from_float(torch.randn(64, 64, generator=g)), dtype=torch.float32)
    for lin in (odd, wide):
        before = lin.packed.clone()
        assert not lin.use_native_kernel()
        assert lin.layout == "torch" and torch.equal(lin.packed, before)
