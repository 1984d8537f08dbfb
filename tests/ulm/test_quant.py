"""Weight-only quantisation (ulm/quant.py): GGUF block packing against the gguf package's own dequantiser,
the int4/int8 kernels against dequantised references, and the module swap.

Run: .venv/bin/python -m pytest tests/ulm/test_quant.py -q
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants
from torch import nn

from ulm import quant
from ulm.config import ModelConfig
from ulm.kernels import native
from ulm.model import Transformer
from ulm.quant import (
    DENSE_MIN_ROWS,
    Int4Linear,
    Int4Weight,
    Int8Linear,
    dequantize_raw,
    int4_from_float,
    int4_from_raw,
    quantize_model,
    quantized_linear,
)


@dataclass
class Blocks:
    """A raw GGUF tensor as the loader hands it over (see ulm.loading.gguf.GGUFTensor)."""

    ggml_type: str
    shape: tuple[int, ...]
    blocks: np.ndarray


def gguf_blocks(w: np.ndarray, kind: str) -> Blocks:
    """Quantise w [N, K] with the gguf package (llama.cpp's reference quantisers)."""
    data = quants.quantize(w.astype(np.float32), GGMLQuantizationType[kind])
    return Blocks(kind, w.shape, data.view(np.uint8).reshape(w.shape[0], -1))


def gguf_dequant(raw: Blocks) -> torch.Tensor:
    return torch.from_numpy(quants.dequantize(raw.blocks, GGMLQuantizationType[raw.ggml_type]).astype(np.float32))


@pytest.fixture
def weight() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((64, 96)) * 0.05 + rng.standard_normal((64, 1)) * 0.01).astype(np.float32)


@pytest.mark.parametrize("kind", ["Q4_1", "Q4_0", "Q8_0"])
def test_block_unpacking_matches_the_gguf_dequantiser_exactly(weight: np.ndarray, kind: str) -> None:
    raw = gguf_blocks(weight, kind)
    assert torch.equal(dequantize_raw(raw), gguf_dequant(raw))


@pytest.mark.parametrize("kind", ["Q4_1", "Q4_0"])
def test_int4_kernel_with_fp32_scales_reproduces_the_dequantised_gguf_weight(weight: np.ndarray, kind: str) -> None:
    raw = gguf_blocks(weight, kind)
    lin = Int4Linear.quantize(int4_from_raw(raw), dtype=torch.float32)
    k = weight.shape[1]
    seen = lin(torch.eye(k))  # [K, N]: row i is W[:, i]
    assert (seen.t() - gguf_dequant(raw)).abs().max().item() < 1e-6


def test_int4_kernel_in_bf16_matches_the_dequantised_reference_within_bf16_tolerance() -> None:
    gen = torch.Generator().manual_seed(1)
    w4 = int4_from_float(torch.randn(128, 256, generator=gen) * 0.05)
    x = torch.randn(5, 256, generator=gen)
    ref = x @ w4.dequantize().t()  # [5, 128] in fp32
    got = Int4Linear.quantize(w4)(x.bfloat16())
    assert got.dtype == torch.bfloat16
    assert ((got.float() - ref).norm() / ref.norm()).item() < 1e-2


@pytest.mark.parametrize("n", [64, 192, 960])
def test_many_rows_take_the_dense_path_and_agree_with_the_kernel(n: int) -> None:
    gen = torch.Generator().manual_seed(5)
    w4 = int4_from_float(torch.randn(n, 96, generator=gen) * 0.05)
    lin = Int4Linear.quantize(w4)
    torch.testing.assert_close(lin.dense().float(), w4.dequantize(), atol=4e-3, rtol=0)  # bf16 scales and zeros
    x = torch.randn(DENSE_MIN_ROWS, 96, generator=gen).bfloat16()
    dense = lin(x)  # one GEMM on the unpacked weight
    kernel = torch.cat([lin(x[i:i + 8]) for i in range(0, len(x), 8)])  # few rows at a time: the int4 kernel
    assert ((dense.float() - kernel.float()).norm() / kernel.float().norm()).item() < 1e-2


def test_the_dense_weight_unpacks_to_fp32_for_cpus_without_a_bf16_gemm() -> None:
    w4 = int4_from_float(torch.randn(128, 96, generator=torch.Generator().manual_seed(8)) * 0.05)
    lin = Int4Linear.quantize(w4)
    fp32 = lin.dense(torch.float32)
    assert fp32.dtype == torch.float32
    torch.testing.assert_close(fp32.bfloat16(), lin.dense(), atol=4e-3, rtol=0)
    torch.testing.assert_close(fp32, w4.dequantize(), atol=4e-3, rtol=0)  # bf16 scales and zeros only


def test_torchs_int4_packing_block_is_found_on_this_cpu() -> None:
    """torch packs 64-row blocks with AVX-512 and 32-row ones with AVX2: the dense path must read whichever
    this CPU got (it once read 64-row blocks everywhere, and a prefill on an AVX2 machine was garbage)."""
    block = quant.torch_pack_block()
    assert block in (64, 32, 16)
    q = torch.randint(0, 16, (192, 96), generator=torch.Generator().manual_seed(7), dtype=torch.int32)
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
    assert torch.equal(quant._unpack_torch_layout(packed, 192, 96, block).int(), q)


@pytest.mark.parametrize("n, k", [(64, 32), (192, 96), (960, 576)])
def test_the_native_unpacking_gives_the_bits_of_the_torch_ops(n: int, k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if native.library() is None:
        pytest.fail("the native kernels did not build on this machine (a C compiler is part of the set-up)")
    gen = torch.Generator().manual_seed(6)
    lin = Int4Linear.quantize(int4_from_float(torch.randn(n, k, generator=gen) * 0.05 + 0.01))
    fast = lin.dense()
    monkeypatch.setattr(quant, "library", lambda: None)
    assert torch.equal(fast, lin.dense())


def test_minmax_int4_of_a_dequantised_q4_1_weight_lands_on_the_same_grid(weight: np.ndarray) -> None:
    exact = gguf_dequant(gguf_blocks(weight, "Q4_1"))
    assert (int4_from_float(exact).dequantize() - exact).abs().max().item() < 1e-6


def test_int4_from_float_error_is_within_half_a_step_per_group() -> None:
    w = torch.randn(16, 64)
    w4 = int4_from_float(w)
    step = w4.scale.repeat_interleave(32, dim=1)  # [16, 64]
    assert ((w4.dequantize() - w).abs() <= step / 2 + 1e-6).all()


def test_int8_linear_matches_its_dequantised_weight_and_casts_inputs() -> None:
    gen = torch.Generator().manual_seed(2)
    w, b = torch.randn(24, 40, generator=gen), torch.randn(24, generator=gen)
    lin = Int8Linear.quantize(w, b, dtype=torch.float32)
    deq = lin.weight.float() * lin.scales[:, None]
    x = torch.randn(3, 7, 40, generator=gen, dtype=torch.float64)  # any float input is cast
    got = lin(x)
    assert got.shape == (3, 7, 24) and got.dtype == torch.float32
    torch.testing.assert_close(got, x.float() @ deq.t() + b, atol=1e-4, rtol=1e-4)
    assert (deq - w).abs().max() <= lin.scales.max() / 2 + 1e-6


def test_fused_raw_parts_are_packed_in_row_order() -> None:
    rng = np.random.default_rng(3)
    parts = [gguf_blocks(rng.standard_normal((rows, 64)).astype(np.float32) * 0.1, "Q4_1") for rows in (32, 16, 16)]
    fused = torch.cat([gguf_dequant(p) for p in parts])  # [64, 64]
    lin = quantized_linear(fused, None, "int4", parts, dtype=torch.float32)
    assert isinstance(lin, Int4Linear)
    assert (lin(torch.eye(64)).t() - fused).abs().max().item() < 1e-6


def test_shapes_the_int4_kernel_refuses_fall_back_to_int8() -> None:
    assert isinstance(quantized_linear(torch.randn(24, 64), None, "int4"), Int8Linear)  # N % 16 != 0
    assert isinstance(quantized_linear(torch.randn(32, 48), None, "int4"), Int8Linear)  # K % 32 != 0
    with pytest.raises(ValueError, match="int4 kernel"):
        Int4Linear.quantize(Int4Weight(torch.zeros(24, 64, dtype=torch.int32), torch.ones(24, 2), torch.zeros(24, 2)))


def test_unsupported_blocks_and_schemes_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="Q6_K"):
        int4_from_raw(Blocks("Q6_K", (16, 256), np.zeros((16, 210), np.uint8)))
    with pytest.raises(ValueError, match="do not encode"):
        int4_from_raw(Blocks("Q4_1", (16, 64), np.zeros((16, 41), np.uint8)))
    with pytest.raises(ValueError, match="int3"):
        quantized_linear(torch.randn(16, 32), None, "int3")


def test_quantize_model_swaps_every_linear_and_keeps_the_outputs_close() -> None:
    torch.manual_seed(4)
    config = ModelConfig(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=128,
                         max_seq_len=64, tie_embeddings=True)
    model = Transformer(config).eval()
    ids = torch.randint(0, 256, (2, 12))
    with torch.inference_mode():
        ref = model(ids)
        quantize_model(model, "int4", dtype=torch.float32)
        got = model(ids)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert isinstance(model.lm_head, Int4Linear) and isinstance(model.embed, nn.Embedding)
    assert ((got - ref).norm() / ref.norm()).item() < 0.1
