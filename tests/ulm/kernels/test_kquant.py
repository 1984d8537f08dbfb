"""The native block-quant kernels (ulm/kernels/ulm_kquant*.c through `ulm.kquant.KQuantLinear`): for every
type, odd shapes and 1 to 64 rows, the product equals the exact product of the dequantised weight with the
kernel's own int8 activations (so the only error left is the activations' rounding), the tiles hold the
file's bytes, bf16 unpacking is exact, and results do not depend on the batch, the parts or the threads.

Run: .venv/bin/python -m pytest tests/ulm/kernels/test_kquant.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ulm.kernels import native
from ulm.kquant import FORMATS, KQuantLinear, dequantize, kernels_available
from ulm.kquant.samples import TYPES, random_blocks

vnni = pytest.mark.skipif(not kernels_available(), reason="no native kernels for AVX-512 VNNI here: torch runs")

# (N, K) per block size: N off the 32-row tiles, K of one block and of several
SHAPES = {32: [(1, 32), (33, 96), (70, 800), (96, 160)], 256: [(1, 256), (33, 768), (70, 256), (64, 2304)]}
CASES = [(t, n, k) for t in TYPES for n, k in SHAPES[FORMATS[t].block]]


def quantised_activations(x: torch.Tensor, precise: bool = False) -> torch.Tensor:
    """x [M, K] as the kernel quantises it (per group of 32: q = rint(x · (top / absmax)), scale absmax / top,
    top = 127, or 32639 for int16), dequantised again in fp64: what the kernel's integer dot products multiply."""
    top = torch.tensor(32639.0 if precise else 127.0)
    g = x.float().view(x.shape[0], -1, 32)  # [M, G, 32]
    amax = g.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, top / amax, torch.zeros_like(amax))
    q = torch.round(g * inv)
    return (q.double() * (amax / top).double()).view_as(x)


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-30)).item()


@vnni
@pytest.mark.parametrize(("ggml_type", "n", "k"), CASES)
def test_the_tiles_hold_the_files_bytes_per_row(ggml_type: str, n: int, k: int) -> None:
    raw = random_blocks(ggml_type, n, k, seed=n)
    lin = KQuantLinear.from_blocks([raw])
    assert lin.layout == "tiles"
    assert lin.data.numel() == -(-n // 32) * 32 * raw.blocks.shape[1]  # whole tiles, the file's bytes per row


@vnni
@pytest.mark.parametrize(("ggml_type", "n", "k"), CASES)
@pytest.mark.parametrize("rows", [1, 4, 16, 64])
@pytest.mark.parametrize("precise", [False, True], ids=["int8", "int16"])
def test_every_type_equals_the_exact_product_with_the_kernels_activations(ggml_type: str, n: int, k: int,
                                                                         rows: int, precise: bool) -> None:
    raw = random_blocks(ggml_type, n, k, seed=rows + n)
    w = dequantize(ggml_type, raw.blocks, k)  # [N, K] fp32, bit-equal to gguf's
    lin = KQuantLinear.from_blocks([raw], out_dtype=torch.float32, precise=precise)
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(k + rows))
    x[:, 5] *= 40  # an outlier channel, as the residual stream of real models has
    got = lin.matmul(x, torch.float32)
    xq = quantised_activations(x, precise)
    exact = xq @ w.double().t()  # the kernel's arithmetic without its fp32 roundings
    assert got.shape == (rows, n)
    assert relative(got, exact) < 2e-5  # fp32 sums: measured ≤ 3e-6
    # so its error against the float product is the activations' rounding, bounded by Σ |x − x̂|·|w|
    dense = x.double() @ w.double().t()
    assert ((got - dense).abs() <= (x.double() - xq).abs() @ w.double().abs().t() + 1e-5 * dense.abs().max()).all()
    if rows * n >= 256:
        assert relative(got, dense) < (3e-4 if precise else 0.03)  # measured: int8 0.4-1.5%, int16 2e-5-8e-5


@vnni
@pytest.mark.parametrize("ggml_type", TYPES)
def test_bf16_inputs_and_outputs_are_the_fp32_paths_rounded(ggml_type: str) -> None:
    k = 2 * FORMATS[ggml_type].block
    lin = KQuantLinear.from_blocks([random_blocks(ggml_type, 48, k, seed=3)], torch.randn(48))
    x = torch.randn(5, k, generator=torch.Generator().manual_seed(4)).bfloat16()
    wide = lin.matmul(x, torch.float32)
    assert torch.equal(lin.matmul(x.float(), torch.float32), wide)  # the same values in, the same sums
    assert torch.equal(lin.matmul(x, torch.bfloat16), wide.bfloat16())


@vnni
@pytest.mark.parametrize("ggml_type", TYPES)
@pytest.mark.parametrize("precise", [False, True], ids=["int8", "int16"])
def test_a_rows_result_does_not_depend_on_its_batch_nor_the_thread_count(ggml_type: str, precise: bool) -> None:
    k = 3 * FORMATS[ggml_type].block
    lin = KQuantLinear.from_blocks([random_blocks(ggml_type, 200, k, seed=5)], out_dtype=torch.float32,
                                   precise=precise)
    x = torch.randn(11, k, generator=torch.Generator().manual_seed(6))
    together = lin.matmul(x, torch.float32)
    for i in (0, 3, 4, 10):  # first, last of a 4-row pass, first of the next, the lone remainder
        assert torch.equal(lin.matmul(x[i:i + 1], torch.float32), together[i:i + 1])
    assert torch.equal(lin.matmul(x[2:7], torch.float32), together[2:7])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(lin.matmul(x, torch.float32), together)
    finally:
        torch.set_num_threads(threads)


@vnni
def test_a_fused_linear_of_mixed_types_equals_its_parts_side_by_side() -> None:
    parts = [random_blocks("Q4_K", 70, 512, seed=7), random_blocks("Q4_K", 33, 512, seed=8),
             random_blocks("Q6_K", 64, 512, seed=9), random_blocks("Q5_K", 1, 512, seed=10)]
    bias = torch.randn(168)
    fused = KQuantLinear.from_blocks(parts, bias, out_dtype=torch.float32)
    x = torch.randn(6, 512, generator=torch.Generator().manual_seed(11))
    alone = torch.cat([KQuantLinear.from_blocks([p]).matmul(x, torch.float32) for p in parts], dim=1)
    assert torch.equal(fused.matmul(x, torch.float32), alone + bias)


@vnni
@pytest.mark.parametrize(("ggml_type", "n", "k"), CASES)
def test_unpacking_to_bf16_gives_the_exact_weights_rounded(ggml_type: str, n: int, k: int) -> None:
    raw = random_blocks(ggml_type, n, k, seed=12)
    lin = KQuantLinear.from_blocks([raw])
    assert torch.equal(lin.dense_t(), dequantize(ggml_type, raw.blocks, k).t().bfloat16())


@vnni
def test_unpacking_a_column_range_crosses_tiles_and_parts() -> None:
    parts = [random_blocks("Q8_0", 45, 256, seed=13), random_blocks("Q4_K", 40, 256, seed=14)]
    lin = KQuantLinear.from_blocks(parts)
    whole = torch.cat([dequantize(p.ggml_type, p.blocks, 256) for p in parts]).t().bfloat16()  # [K, 85]
    for lo, hi in [(0, 85), (3, 31), (30, 70), (44, 46), (84, 85)]:
        assert torch.equal(lin.dense_t(lo, hi), whole[:, lo:hi])
    with pytest.raises(ValueError, match="columns"):
        lin.dense_t(10, 86)


@pytest.mark.parametrize("ggml_type", TYPES)
def test_rows_dequantised_from_the_gguf_layout_equal_the_reference(ggml_type: str) -> None:
    lib = native.library()
    assert lib is not None  # every machine that builds the library has the portable row dequantisation
    k = 2 * FORMATS[ggml_type].block
    raw = random_blocks(ggml_type, 40, k, seed=15)
    ids = torch.tensor([0, 39, 20, 20, 7])
    out = torch.empty(len(ids), k)
    rows = np.ascontiguousarray(raw.blocks)
    assert lib.ulm_kq_dequant_rows(FORMATS[ggml_type].ggml_id, rows.ctypes.data, rows.strides[0], ids.data_ptr(),
                                   len(ids), k, out.data_ptr()) == 0
    assert torch.equal(out, dequantize(ggml_type, raw.blocks, k)[ids])
