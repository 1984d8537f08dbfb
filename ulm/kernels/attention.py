"""Decode-step attention: one new query per row against the row's cached keys, each row its own span.

- `decode_attention(q, k, v, spans)`: attention alone, for any caller (the generic model path);
- `DecodeLayers`: the fast model's fused per-layer step (rotary, cache write, attention) over one cache.

`decode_attention(q, k, v, spans)` runs the native kernel (`ulm_kernels.c`) for bf16 and fp32 CPU
tensors, and torch SDPA under a per-row mask otherwise (no compiler, `ULM_NATIVE=0`, other devices or
dtypes). Both compute softmax(q·kᵀ/√hd)·v over the keys lo ≤ t < hi of each row in fp32; the native one
skips SDPA's per-call set-up, which dominates at one query (measured on the embedded model: 67 µs per
layer for SDPA at position 200, against a few µs), and needs no mask for rows at different positions.
"""

from __future__ import annotations

import ctypes
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ulm.kernels.native import library

_NATIVE = {torch.bfloat16: "ulm_attend_bf16", torch.float32: "ulm_attend_f32"}


def decode_attention(q: Tensor, k: Tensor, v: Tensor, spans: Tensor) -> Tensor:
    """Attention output [B, Hq, hd] for q [B, Hq, hd] against k, v [B, Hkv, S, hd] (Hq a multiple of Hkv),
    row b attending to key positions spans[b, 0] ≤ t < spans[b, 1] (spans: int64 [B, 2], contiguous)."""
    B, Hq, hd = q.shape
    Hkv = k.shape[1]
    lib = library() if q.device.type == "cpu" and q.dtype in _NATIVE else None
    if spans.dtype != torch.int64 or not spans.is_contiguous() or spans.shape != (B, 2):
        raise ValueError(f"spans must be a contiguous int64 tensor [{B}, 2], got {spans.dtype} {tuple(spans.shape)}")
    if lib is None or q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1 or k.dtype != q.dtype:
        return _sdpa(q, k, v, spans)
    out = torch.empty(B, Hq, hd, dtype=q.dtype)
    rc = getattr(lib, _NATIVE[q.dtype])(q.data_ptr(), q.stride(0), q.stride(1),
                                        k.data_ptr(), k.stride(0), k.stride(1), k.stride(2),
                                        v.data_ptr(), v.stride(0), v.stride(1), v.stride(2),
                                        out.data_ptr(), spans.data_ptr(), B, Hq, Hkv, hd, 1 / math.sqrt(hd))
    if rc != 0:
        raise ValueError(f"decode attention: a row has no key to attend to (spans {spans.tolist()})")
    return out


def _sdpa(q: Tensor, k: Tensor, v: Tensor, spans: Tensor) -> Tensor:
    """The torch fallback: the query heads of each KV group folded into the query axis, a per-row mask."""
    B, Hq, hd = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    t = torch.arange(S, device=q.device)  # [S]
    spans = spans.to(q.device)
    mask = (t >= spans[:, :1]) & (t < spans[:, 1:])  # [B, S]
    y = F.scaled_dot_product_attention(q.reshape(B, Hkv, Hq // Hkv, hd), k, v, attn_mask=mask[:, None, None, :])
    return y.reshape(B, Hq, hd)


class _Layer(ctypes.Structure):
    """ulm_layer of ulm_kernels.c: one layer's cache, its strides (elements), the rotary tables and shapes."""

    _fields_ = [("k", ctypes.c_void_p), ("v", ctypes.c_void_p),
                *((name, ctypes.c_int64) for name in ("ks_r", "ks_h", "ks_t", "vs_r", "vs_h", "vs_t")),
                ("cos", ctypes.c_void_p), ("sin", ctypes.c_void_p),
                *((name, ctypes.c_int64) for name in ("Hq", "Hkv", "hd")), ("scale", ctypes.c_float)]


class DecodeLayers:
    """The fused decode step (rotary embedding, cache write, attention) of every layer over one bf16 KV cache.

    Built once per cache (its layers' addresses are bound into C structs); `step(i, qkv, meta, out)` then
    costs one foreign call per layer. `meta` is int64 [B, 3] of (cache row, lo, hi) per batch row: the new
    token sits at hi − 1 and attends to lo..hi − 1. `cos` and `sin_signed` are the bf16 rotary tables
    [max_len, hd], the sine's first half negated (rotate_half folded into the table). Returns None from
    `make` where the native kernels are unavailable or the cache is not bf16.
    """

    def __init__(self, lib: ctypes.CDLL, k: Tensor, v: Tensor, cos: Tensor, sin_signed: Tensor, n_heads: int) -> None:
        self._keep = (k, v, cos, sin_signed)  # the structs point into these
        n_layers, _, n_kv, _, hd = k.shape  # [L, max_batch, Hkv, max_len, hd]
        self._structs = (_Layer * n_layers)()
        item = k.element_size()
        for i, s in enumerate(self._structs):
            s.k, s.v = k.data_ptr() + i * k.stride(0) * item, v.data_ptr() + i * v.stride(0) * item
            s.ks_r, s.ks_h, s.ks_t = k.stride(1), k.stride(2), k.stride(3)
            s.vs_r, s.vs_h, s.vs_t = v.stride(1), v.stride(2), v.stride(3)
            s.cos, s.sin = cos.data_ptr(), sin_signed.data_ptr()
            s.Hq, s.Hkv, s.hd, s.scale = n_heads, n_kv, hd, 1 / math.sqrt(hd)
        self._addresses = [ctypes.addressof(s) for s in self._structs]
        self._fn = lib.ulm_decode_layer_bf16

    @classmethod
    def make(cls, k: Tensor, v: Tensor, cos: Tensor, sin_signed: Tensor, n_heads: int) -> DecodeLayers | None:
        tables = (k, v, cos, sin_signed)
        if any(t.dtype != torch.bfloat16 or t.device.type != "cpu" for t in tables):
            return None
        if not (k.stride(-1) == v.stride(-1) == 1 and cos.is_contiguous() and sin_signed.is_contiguous()):
            return None
        lib = library()
        return None if lib is None else cls(lib, k, v, cos, sin_signed, n_heads)

    @property
    def addresses(self) -> list[int]:
        """Each layer's struct address (valid while this object lives), for ulm.kernels.decode."""
        return list(self._addresses)

    def step(self, i: int, qkv: Tensor, meta: Tensor, out: Tensor) -> None:
        """Layer i: qkv [B, (Hq + 2·Hkv)·hd] (contiguous) → out [B, Hq·hd], the cache rows written."""
        if self._fn(self._addresses[i], meta.data_ptr(), meta.shape[0], qkv.data_ptr(), out.data_ptr()) != 0:
            raise ValueError(f"decode step: a row has no key to attend to (meta {meta.tolist()})")
