"""Decode-step attention (ulm/kernels/attention.py): the native kernel against an fp64 reference for every
shape it specialises or not, strided caches, per-row spans and sliding windows; the torch fallback; the
fused layer step (rotary embedding, cache write, attention) against the same in torch ops.

Run: .venv/bin/python -m pytest tests/ulm/kernels -q
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ulm.kernels import attention as kernel_attention
from ulm.kernels import native
from ulm.kernels.attention import DecodeLayers, decode_attention
from ulm.layers.rope import RotaryEmbedding, apply_rope


@pytest.fixture(autouse=True)
def kernels_built() -> None:
    if native.library() is None:
        pytest.fail("the native kernels did not build on this machine (a C compiler is part of the set-up)")


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√hd)·v per row over its span, in fp64, the KV heads repeated for their query heads."""
    B, Hq, hd = q.shape
    rep = Hq // k.shape[1]
    out = torch.empty(B, Hq, hd, dtype=torch.float64)
    for b in range(B):
        lo, hi = spans[b].tolist()
        kb = k[b, :, lo:hi].double().repeat_interleave(rep, 0)  # [Hq, n, hd]
        vb = v[b, :, lo:hi].double().repeat_interleave(rep, 0)
        w = (q[b].double().unsqueeze(1) @ kb.transpose(1, 2) / math.sqrt(hd)).softmax(-1)  # [Hq, 1, n]
        out[b] = (w @ vb).squeeze(1)
    return out


def case(B: int, Hq: int, Hkv: int, hd: int, S: int, dtype: torch.dtype,
         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q strided as the fused q/k/v projection leaves it; k and v as cache views (rows of a bigger cache)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq + 2 * Hkv, hd, generator=g).to(dtype)[:, :Hq]
    k = torch.randn(B + 1, Hkv, S + 3, hd, generator=g).to(dtype)[1:, :, :S]
    v = torch.randn(B + 1, Hkv, S + 3, hd, generator=g).to(dtype)[1:, :, :S]
    return q, k, v, torch.randint(0, 1, (B, 2))


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 1e-2), (torch.float32, 2e-6)], ids=["bf16", "fp32"])
@pytest.mark.parametrize("Hq, Hkv, hd", [(9, 3, 64), (8, 8, 64), (8, 1, 128), (12, 4, 128), (4, 2, 24), (10, 1, 96),
                                         (18, 2, 32)],
                         ids=["gqa3-64", "mha-64", "mqa-128", "gqa3-128", "odd-24", "gqa10-96", "gqa9-32"])
def test_native_decode_attention_matches_the_fp64_reference(dtype: torch.dtype, tol: float, Hq: int, Hkv: int,
                                                            hd: int) -> None:
    q, k, v, _ = case(3, Hq, Hkv, hd, 70, dtype)
    spans = torch.tensor([[0, 1], [0, 70], [52, 64]])  # one key; the whole cache; a sliding window's span
    got = decode_attention(q, k, v, spans)
    assert got.dtype == dtype and got.shape == (3, Hq, hd)
    torch.testing.assert_close(got.double(), reference(q, k, v, spans), atol=tol, rtol=tol)
    assert torch.equal(got[0].double(), v[0, :, :1].double().repeat_interleave(Hq // Hkv, 0).squeeze(1))


def test_the_torch_fallback_computes_the_same_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v, _ = case(2, 9, 3, 64, 40, torch.float32, seed=1)
    spans = torch.tensor([[3, 17], [0, 40]])
    native_out = decode_attention(q, k, v, spans)
    monkeypatch.setattr(kernel_attention, "library", lambda: None)
    torch.testing.assert_close(decode_attention(q, k, v, spans), native_out, atol=2e-6, rtol=2e-6)


def test_bad_spans_are_refused_with_a_message() -> None:
    q, k, v, _ = case(2, 4, 2, 64, 8, torch.float32)
    with pytest.raises(ValueError, match="no key"):
        decode_attention(q, k, v, torch.tensor([[0, 4], [5, 5]]))
    with pytest.raises(ValueError, match="int64"):
        decode_attention(q, k, v, torch.tensor([[0, 4], [0, 5]], dtype=torch.int32))
    with pytest.raises(ValueError, match="contiguous"):
        decode_attention(q, k, v, torch.tensor([[0, 0], [4, 5]]).t())


def test_the_fused_layer_step_rotates_writes_the_cache_and_attends_as_torch_ops_do() -> None:
    L, rows, Hq, Hkv, hd, S = 2, 3, 6, 2, 64, 24
    g = torch.Generator().manual_seed(2)
    rope = RotaryEmbedding(hd, S, 10000.0)
    rope.rebuild(torch.bfloat16, "cpu")
    half = hd // 2
    sin_signed = torch.cat((-rope.sin[:, :half], rope.sin[:, half:]), dim=-1)
    k_cache = torch.randn(L, rows, Hkv, S, hd, generator=g).bfloat16()
    v_cache = torch.randn(L, rows, Hkv, S, hd, generator=g).bfloat16()
    want_k, want_v = k_cache.clone(), v_cache.clone()
    fused = DecodeLayers.make(k_cache, v_cache, rope.cos, sin_signed, Hq)
    assert fused is not None
    meta = torch.tensor([[2, 0, 11], [0, 5, 20]])  # (cache row, lo, hi): new tokens at positions 10 and 19
    qkv = torch.randn(2, (Hq + 2 * Hkv) * hd, generator=g).bfloat16()
    out = torch.empty(2, Hq * hd, dtype=torch.bfloat16)
    fused.step(1, qkv, meta, out)
    for b, (row, lo, hi) in enumerate(meta.tolist()):
        pos = hi - 1
        x = qkv[b].view(Hq + 2 * Hkv, hd)
        rotated = apply_rope(x[:Hq + Hkv], rope.cos[pos], rope.sin[pos])  # [Hq + Hkv, hd]
        want_k[1, row, :, pos], want_v[1, row, :, pos] = rotated[Hq:], x[Hq + Hkv:]
        want = decode_attention(rotated[None, :Hq], want_k[1, row:row + 1], want_v[1, row:row + 1],
                                torch.tensor([[lo, hi]]))
        assert torch.equal(out[b].view(Hq, hd), want[0])
    assert torch.equal(k_cache, want_k) and torch.equal(v_cache, want_v)


@pytest.mark.parametrize("Hq, Hkv, hd", [(9, 3, 64), (4, 2, 24)], ids=["gqa3-64", "odd-24-scalar-path"])
def test_the_fused_step_splits_long_rows_into_units_and_merges_them_to_the_reference(Hq: int, Hkv: int,
                                                                                   hd: int) -> None:
    """Rows of 1 to ~600 keys: one block, several 64-key blocks in one unit (online softmax), several units a
    head (the split, merged), windows not starting at 0; a row's output alone equals it in the batch."""
    rows, S = 4, 640
    g = torch.Generator().manual_seed(5)
    cos, sin = (torch.randn(S, hd, generator=g).bfloat16() for _ in range(2))
    k_cache = torch.randn(1, rows, Hkv, S, hd, generator=g).bfloat16()
    v_cache = torch.randn(1, rows, Hkv, S, hd, generator=g).bfloat16()
    fused = DecodeLayers.make(k_cache, v_cache, cos, sin, Hq)
    assert fused is not None
    meta = torch.tensor([[0, 0, 1], [1, 0, 130], [2, 37, 600], [3, 500, 631]])  # (cache row, lo, hi)
    qkv = torch.randn(4, (Hq + 2 * Hkv) * hd, generator=g).bfloat16()
    out = torch.empty(4, Hq * hd, dtype=torch.bfloat16)
    fused.step(0, qkv, meta, out)
    half = hd // 2
    for b, (row, lo, hi) in enumerate(meta.tolist()):
        pos = hi - 1
        x = qkv[b].view(Hq + 2 * Hkv, hd).float()
        rotated = ((x[:Hq] * cos[pos].float()).bfloat16().float()
                   + (x[:Hq].roll(half, -1) * sin[pos].float()).bfloat16().float())  # rounded as the kernel rounds
        want = reference(rotated.bfloat16()[None], k_cache[0, row:row + 1], v_cache[0, row:row + 1],
                         torch.tensor([[lo, hi]]))
        torch.testing.assert_close(out[b].view(1, Hq, hd).double(), want, atol=2e-3, rtol=1e-2)
        alone = torch.empty(1, Hq * hd, dtype=torch.bfloat16)
        fused.step(0, qkv[b:b + 1], meta[b:b + 1], alone)
        assert torch.equal(alone[0], out[b])


def test_the_fused_step_is_offered_for_bf16_caches_only() -> None:
    rope = RotaryEmbedding(64, 8, 10000.0)
    k = torch.zeros(1, 1, 1, 8, 64)
    assert DecodeLayers.make(k, k, rope.cos, rope.sin, 1) is None


def test_native_attention_agrees_with_sdpa_on_a_long_cache() -> None:
    q, k, v, _ = case(1, 9, 3, 64, 2048, torch.bfloat16, seed=3)
    got = decode_attention(q, k, v, torch.tensor([[0, 2048]]))
    want = F.scaled_dot_product_attention(q.reshape(1, 3, 3, 64), k, v).reshape(1, 9, 64)
    torch.testing.assert_close(got.float(), want.float(), atol=1e-2, rtol=1e-2)
