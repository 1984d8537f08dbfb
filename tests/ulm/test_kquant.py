"""Block-quant linears (ulm/kquant): the torch reference dequantisation against the gguf package's, the
module's few-row (kernel) and many-row (dense) paths, the fallback without native kernels, rebuilding from
its buffers, clear errors on bad input, and the real Qwen2.5-Coder files' tensors.

Run: .venv/bin/python -m pytest tests/ulm/test_kquant.py -q
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants

from ulm.kernels import native
from ulm.kquant import (
    FORMATS,
    KQuantEmbedding,
    KQuantLinear,
    dequantize,
    huge_pages_buffer,
    kernels_available,
    linear,
)
from ulm.kquant.memory import HUGE_PAGE
from ulm.kquant.samples import TYPES, RawTensor, random_blocks

vnni = pytest.mark.skipif(not kernels_available(), reason="no native kernels for AVX-512 VNNI here: torch runs")
MODELS = Path("/work/models")  # the joined Qwen2.5-Coder GGUF files (ulm's registry installs them)
CODER_1_5B = MODELS / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
CODER_0_5B = MODELS / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


@pytest.fixture
def no_native(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The native library off (ULM_NATIVE=0), as on a machine without a compiler."""
    monkeypatch.setenv("ULM_NATIVE", "0")
    native.library.cache_clear()
    yield
    native.library.cache_clear()


@pytest.mark.parametrize("ggml_type", TYPES)
def test_the_reference_dequantisation_is_the_gguf_packages_bit_for_bit(ggml_type: str) -> None:
    k = 3 * FORMATS[ggml_type].block
    raw = random_blocks(ggml_type, 21, k, seed=1)
    want = quants.dequantize(raw.blocks, GGMLQuantizationType[ggml_type]).reshape(21, k)
    assert np.array_equal(dequantize(ggml_type, raw.blocks, k).numpy(), want)


@vnni
@pytest.mark.parametrize("ggml_type", ["Q4_K", "Q6_K", "Q8_0"])
def test_a_precise_linear_takes_int16_for_decoded_rows_and_int8_for_a_prompts(ggml_type: str) -> None:
    k = 2 * FORMATS[ggml_type].block
    raw = random_blocks(ggml_type, 300, k, seed=2)
    bias = torch.randn(300)
    lin, plain = KQuantLinear.from_blocks([raw], bias, precise=True), KQuantLinear.from_blocks([raw], bias)
    x = torch.randn(6, k, generator=torch.Generator().manual_seed(3)).bfloat16()
    int16, int8 = lin.matmul(x, torch.float32), lin.matmul(x, torch.float32, precise_rows=0)
    assert torch.equal(int8, plain.matmul(x, torch.float32))
    mixed = lin.matmul(x, torch.float32, precise_rows=2)  # the first rows decoded, the others a prompt's
    assert torch.equal(mixed[:2], int16[:2]) and torch.equal(mixed[2:], int8[2:])
    exact = x.float() @ dequantize(ggml_type, raw.blocks, k).t() + bias
    assert relative(int16, exact) < 0.2 * relative(int8, exact)  # measured ~1e-5 against ~0.5%
    assert torch.equal(lin(x), int16.bfloat16())  # a 2-D input: decoded rows
    assert torch.equal(lin(x.view(6, 1, k)), int16.bfloat16().view(6, 1, -1))  # [B, 1, K]: a decode step
    assert torch.equal(lin(x.view(1, 6, k)), int8.bfloat16().view(1, 6, -1))  # [B, T > 1, K]: a prompt
    with pytest.raises(ValueError, match="precise_rows"):
        lin.matmul(x, precise_rows=7)
    w = dequantize(ggml_type, raw.blocks, k)  # the dense path the bench compares the kernel with:
    assert torch.equal(lin.dense_matmul(x).bfloat16(), (x @ w.t().bfloat16() + bias).bfloat16())


@vnni
def test_an_int8_linear_runs_the_kernel_at_any_number_of_rows() -> None:
    lin = KQuantLinear.from_blocks([random_blocks("Q4_K", 64, 256, seed=16)])
    x = torch.randn(600, 256, generator=torch.Generator().manual_seed(17)).bfloat16()
    assert torch.equal(lin(x), lin.matmul(x))
    assert torch.equal(lin(x)[599:], lin(x[599:]))  # row by row, as decoding the tokens one at a time gives


@vnni
def test_the_dense_path_unpacks_in_column_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = random_blocks("Q4_K", 300, 256, seed=4)
    lin = KQuantLinear.from_blocks([raw])
    x = torch.randn(7, 256, generator=torch.Generator().manual_seed(5)).bfloat16()
    whole = lin.dense_matmul(x)
    monkeypatch.setattr(linear, "DENSE_CHUNK_BYTES", 64 * 2 * 256)  # 64 columns at a time
    assert lin._chunks(2 * 256)[:2] == [(0, 64), (64, 128)]
    assert torch.equal(lin.dense_matmul(x), whole)


@pytest.mark.usefixtures("no_native")
@pytest.mark.parametrize("ggml_type", TYPES)
def test_without_native_kernels_the_gguf_rows_run_on_the_reference(ggml_type: str) -> None:
    k = 2 * FORMATS[ggml_type].block
    parts = [random_blocks(ggml_type, 40, k, seed=6), random_blocks("Q8_0", 9, k, seed=7)]
    bias = torch.randn(49)
    lin = KQuantLinear.from_blocks(parts, bias, out_dtype=torch.float32)
    assert lin.layout == "rows" and lin.data.numel() == sum(p.blocks.size for p in parts)
    w = torch.cat([dequantize(p.ggml_type, p.blocks, k) for p in parts])
    for rows in (1, 300):
        x = torch.randn(rows, k, generator=torch.Generator().manual_seed(rows))
        assert relative(lin(x), x @ w.t() + bias) < 1e-6  # fp32 throughout
    assert torch.equal(lin.dense_t(3, 45), w.t()[:, 3:45].bfloat16())
    with pytest.raises(ValueError, match="descriptor"):
        _ = lin.descriptor


@vnni
def test_a_linear_rebuilt_from_its_spec_and_data_gives_the_same_results() -> None:
    parts = [random_blocks("Q4_K", 64, 512, seed=8), random_blocks("Q6_K", 40, 512, seed=9)]
    lin = KQuantLinear.from_blocks(parts, torch.randn(104))
    state = lin.state_dict()
    again = KQuantLinear(lin.spec, lin.in_features, state["data"].clone(), lin.layout, state["bias"])
    x = torch.randn(3, 512, generator=torch.Generator().manual_seed(10))
    assert again.spec == (("Q4_K", 64), ("Q6_K", 40)) and torch.equal(again(x), lin(x))
    assert again.descriptor != lin.descriptor  # its own struct, over its own buffers


@vnni
def test_forward_keeps_leading_dims_and_casts_to_the_output_dtype() -> None:
    lin = KQuantLinear.from_blocks([random_blocks("Q5_0", 96, 64, seed=11)], out_dtype=torch.float32)
    x = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(12)).half()  # fp16 goes in as fp32
    y = lin(x)
    assert y.shape == (2, 3, 96) and y.dtype == torch.float32
    assert torch.equal(y.view(6, 96), lin.matmul(x.view(6, 64).float(), torch.float32))


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "torch"])
@pytest.mark.parametrize("ggml_type", ["Q4_K", "Q5_0", "Q6_K"])
def test_an_embedding_looks_up_its_rows_dequantised_from_the_blocks(ggml_type: str, native_on: bool,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if not native_on:
        monkeypatch.setenv("ULM_NATIVE", "0")
    native.library.cache_clear()
    try:
        raw = random_blocks(ggml_type, 50, 512, seed=18)
        emb = KQuantEmbedding.from_blocks(raw)
        assert torch.equal(emb.rows, torch.from_numpy(raw.blocks))  # the table kept as stored
        ids = torch.tensor([[0, 49, 7], [7, 3, 0]])
        got = emb(ids)
        assert got.shape == (2, 3, 512) and got.dtype == torch.float32
        assert torch.equal(got, dequantize(ggml_type, raw.blocks, 512)[ids])
        with pytest.raises(IndexError, match=r"0\.\.49"):
            emb(torch.tensor([50]))
    finally:
        native.library.cache_clear()


def test_huge_page_buffers_are_aligned_and_outlive_every_other_reference() -> None:
    big = huge_pages_buffer(3 * HUGE_PAGE + 5)
    assert big.dtype == torch.uint8 and big.numel() == 3 * HUGE_PAGE + 5 and big.data_ptr() % HUGE_PAGE == 0
    tail = big[-10:]
    del big  # the view alone keeps the mapping
    tail.fill_(7)
    assert tail.sum().item() == 70
    assert huge_pages_buffer(100).numel() == 100  # small ones are plain tensors


def test_bad_blocks_are_refused_with_one_clear_line() -> None:
    good = random_blocks("Q4_K", 32, 256, seed=13)
    with pytest.raises(ValueError, match="Q4_1 has no native block kernel"):
        KQuantLinear.from_blocks([RawTensor("Q4_1", (32, 256), np.zeros((32, 160), np.uint8))])
    with pytest.raises(ValueError, match="multiple of 256"):
        KQuantLinear.from_blocks([RawTensor("Q6_K", (32, 200), np.zeros((32, 210), np.uint8))])
    with pytest.raises(ValueError, match="one input width"):
        KQuantLinear.from_blocks([good, random_blocks("Q4_K", 32, 512, seed=14)])
    with pytest.raises(ValueError, match="do not encode"):
        KQuantLinear.from_blocks([RawTensor("Q4_K", (32, 256), good.blocks[:, :100])])
    with pytest.raises(ValueError, match="at least one part"):
        KQuantLinear.from_blocks([])
    with pytest.raises(ValueError, match="bias"):
        KQuantLinear.from_blocks([good], torch.zeros(31))


def _real_tensors(path: Path, names: list[str]) -> list[RawTensor]:
    from ulm.loading.gguf import read_gguf_blocks

    if not path.is_file():
        pytest.skip(f"{path} is not installed")
    _, raw = read_gguf_blocks(path)
    return [RawTensor(raw[n].ggml_type, raw[n].shape, raw[n].blocks) for n in names]  # type: ignore[arg-type]


@vnni
@pytest.mark.slow
@pytest.mark.parametrize(("path", "names"), [
    (CODER_1_5B, ["layers.0.attn.wq.weight", "layers.0.attn.wv.weight", "layers.0.mlp.w_down.weight",
                  "layers.1.mlp.w_down.weight", "lm_head.weight"]),
    (CODER_0_5B, ["layers.0.attn.wq.weight", "layers.0.attn.wv.weight", "layers.1.attn.wv.weight",
                  "layers.0.mlp.w_down.weight", "layers.2.mlp.w_down.weight", "lm_head.weight"]),
], ids=["1.5b", "0.5b"])
def test_the_coder_models_tensors_run_as_their_dequantised_reference(path: Path, names: list[str]) -> None:
    types = set()
    for raw in _real_tensors(path, names):
        n, k = raw.shape
        rows = raw if n <= 8192 else RawTensor(raw.ggml_type, (8192, k), raw.blocks[:8192])  # a slice of the head
        w = dequantize(rows.ggml_type, rows.blocks, k)
        lin = KQuantLinear.from_blocks([rows], out_dtype=torch.float32)
        cols = min(n, 512)
        assert torch.equal(lin.dense_t(0, cols), w[:cols].t().bfloat16())
        x = torch.randn(4, k, generator=torch.Generator().manual_seed(k))
        err = relative(lin.matmul(x, torch.float32), x @ w.t())
        assert err < 0.012, f"{rows.ggml_type} {n}×{k}: {err:.4f}"  # measured 0.4-0.6%
        types.add(rows.ggml_type)
    assert types == ({"Q4_K", "Q6_K"} if path == CODER_1_5B else {"Q5_0", "Q8_0", "Q4_K", "Q6_K"})
