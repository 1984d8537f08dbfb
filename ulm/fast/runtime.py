"""The fast model at run time: `FastTransformer`, a `Transformer` whose decode steps, short prefills and the
server's ragged steps skip the generic forward's module calls and plan objects, with the same arithmetic
(bit for bit, tested).

Two paths, picked per forward:

- the lean path, for RMSNorm + SwiGLU blocks: a `DecodePlan` holds each block's norm weights and direct
  matmuls, bound once by `FastTransformer.bind()` after the weights are in place. Through the blocks it runs
  * all of them in one native call (`ulm.kernels.decode.DecodeBlocks`) where every linear runs µLM's int4
    kernel or its block-quant one (`ulm.kquant`; AVX-512 VNNI): one-token steps, prefills of up to
    NATIVE_PREFILL_MAX tokens a row (each token one row of the step, so equal to decoding them one at a
    time) and ragged steps (`forward_ragged`);
  * else, for one-token steps, a Python loop over the blocks whose attention is the native fused layer
    step (`ulm.kernels.attention.DecodeLayers`: rows at any positions) or, without the native kernels, the
    same step in torch ops for rows at one position in contiguous cache rows (single-sequence chat, the
    bench). That torch step is kept for speed: 95 decode tok/s on the embedded model against 73 for the
    generic forward, both without the kernels (measured in one process, medians of 5);
- the generic forward (`Transformer.forward`) for the rest: long prefills, other block kinds, the steps
  above that cannot run.

Where a step's tokens go (rows, positions, the sliding window's first key) comes from `ulm.positions`,
as for the generic forward, so both refuse the same inputs with the same errors. What the lean path binds to
one KV cache (the native structs, the torch step's views) is a `CacheBinding`, kept while that cache's
buffers decode and rebuilt when another cache comes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ulm.config import ModelConfig
from ulm.kernels.activations import silu_mul
from ulm.kernels.attention import DecodeLayers, decode_attention
from ulm.kernels.decode import DecodeBlocks
from ulm.kquant.linear import KQuantLinear
from ulm.kv_cache import KVCache
from ulm.layers.norm import RMSNorm, rms_norm
from ulm.model import Transformer
from ulm.positions import first_key, row_starts, token_spans
from ulm.quant import GROUP, Int4Linear

ACT_DTYPE = torch.bfloat16
# Prefills of at most this many tokens a row run on the native step of all blocks (where it runs): a chat
# turn's new tokens after prefix reuse, the server's prompt chunks. Measured on the embedded model at
# position 200: 21 tokens in 22 ms instead of 42, 256 in 261 instead of 376; level from ~384 tokens, where
# the per-query attention kernel's cost catches up with SDPA's blocked one (longer ones take that path).
NATIVE_PREFILL_MAX = 256

MatMul = Callable[[Tensor], Tensor]


def _matmul(lin: nn.Module) -> MatMul:
    """A direct call of a linear on a 2-D input [M, K] → [M, N], skipping the module's reshapes and casts."""
    if type(lin) is Int4Linear and lin.bias is None and lin.out_dtype == lin.dtype:
        if lin.layout == "vnni":
            return lin.matmul
        packed, sz = lin.packed, lin.scales_zeros
        return lambda h: torch._weight_int4pack_mm_for_cpu(h, packed, GROUP, sz)
    if type(lin) is KQuantLinear and lin.layout == "tiles" and lin.out_dtype == ACT_DTYPE:
        return lin.matmul  # the kernel at any row count, as the fused step runs it (bias inside)
    return lin


def _norm_dtype(lin: nn.Module) -> torch.dtype:
    """The dtype a norm hands this linear: fp32 to a block-quant one (its kernel quantises fp32 inputs, as the
    generic forward passes them), bf16 to the others."""
    return torch.float32 if isinstance(lin, KQuantLinear) else ACT_DTYPE


@dataclass(frozen=True)
class LayerParts:
    """One block as the lean loop runs it: its norms' weights and direct matmuls, and the dtype each norm
    hands its matmul."""

    attn_norm: Tensor  # [D] fp32
    qkv: MatMul  # [B, D] → [B, (Hq + 2·Hkv)·hd]
    o: MatMul  # [B, Hq·hd] → [B, D]
    mlp_norm: Tensor
    gate_up: MatMul  # [B, D] → [B, 2F]
    down: MatMul  # [B, F] → [B, D]
    qkv_in: torch.dtype
    gate_up_in: torch.dtype


class CacheBinding:
    """What the lean path binds to one KV cache: the native fused layer step and, where every linear runs the
    native int4 kernel, all blocks' step in one call (None where they cannot run); and the torch step's
    per-layer views of one run of cache rows. Holding it keeps that cache's buffers alive until another
    cache decodes."""

    def __init__(self, cache: KVCache, plan: DecodePlan) -> None:
        self.k, self.v = cache.k, cache.v
        self.layers = DecodeLayers.make(cache.k, cache.v, plan.cos, plan.sin_signed, plan.n_heads)
        self.blocks = None if self.layers is None else DecodeBlocks.make(self.layers, plan.block_modules, plan.eps)
        self._rows: slice | None = None
        self._views: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    def holds(self, cache: KVCache) -> bool:
        return self.k is cache.k and self.v is cache.v

    def views(self, rows: slice) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Each layer's K and V views of these cache rows, [B, Hkv, max_len, hd], and the same with positions
        first (to write one position with a single index), kept while the same rows decode."""
        if self._rows != rows:
            self._views = []
            for k, v in zip(self.k[:, rows], self.v[:, rows], strict=True):
                self._views.append((k, v, k.permute(2, 0, 1, 3), v.permute(2, 0, 1, 3)))
            self._rows = rows
        return self._views


class DecodePlan:
    """The lean path of a FastTransformer with RMSNorm + SwiGLU blocks, bound to its weights once (`of`)."""

    def __init__(self, model: Transformer) -> None:
        c = model.config
        assert c.head_dim is not None and c.n_kv_heads is not None
        self.embed, self.norm, self.head = model.embed, model.norm, model.lm_head
        self.layers = [LayerParts(b.attn_norm.weight, _matmul(b.attn.wqkv), _matmul(b.attn.wo), b.mlp_norm.weight,
                                  _matmul(b.mlp.w_gate_up), _matmul(b.mlp.w_down), _norm_dtype(b.attn.wqkv),
                                  _norm_dtype(b.mlp.w_gate_up)) for b in model.layers]
        self.block_modules = [(b.attn_norm.weight, b.attn.wqkv, b.attn.wo, b.mlp_norm.weight, b.mlp.w_gate_up,
                               b.mlp.w_down) for b in model.layers]
        self.eps, self.dim = c.norm_eps, c.dim
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.head_dim
        half = c.head_dim // 2
        self.cos = model.rope.cos  # [max_len, hd] bf16
        # rotate_half(x)·sin = roll(x, half)·(−sin₁, sin₂): one roll instead of two slices, a negation and a cat
        self.sin_signed = torch.cat((-model.rope.sin[:, :half], model.rope.sin[:, half:]), dim=-1)  # [max_len, hd]
        self._binding: CacheBinding | None = None

    @classmethod
    def of(cls, model: Transformer) -> DecodePlan | None:
        """The plan of `model`, None when its blocks are not RMSNorm + SwiGLU (the generic forward runs them)."""
        norms = [model.norm] + [n for b in model.layers for n in (b.attn_norm, b.mlp_norm)]
        plain = model.config.norm == "rmsnorm" and model.config.mlp == "swiglu"
        return cls(model) if plain and all(isinstance(n, RMSNorm) for n in norms) else None

    def bind(self, cache: KVCache) -> CacheBinding:
        """This plan bound to `cache` (kept while the same cache's buffers decode)."""
        if self._binding is None or not self._binding.holds(cache):
            self._binding = CacheBinding(cache, self)
        return self._binding

    def forward(self, ids: Tensor, cache: KVCache, rows: list[int], starts: list[int], window: int | None,
                last_only: bool) -> Tensor | None:
        """Logits [B, T or 1, V] of ids [B, T] fed into cache rows `rows` from positions `starts` (checked);
        None where the lean path cannot run this step."""
        B, T = ids.shape
        bound = self.bind(cache)
        if bound.blocks is None and T > 1:
            return None
        x = self.embed(ids).view(B * T, self.dim)  # [B·T, D] fp32 residual
        if bound.blocks is not None:  # T == 1: tokens being decoded; else a prompt's
            bound.blocks.run(x, token_spans(rows, starts, [T] * B, window), B if T == 1 else 0)
        elif not self._layer_loop(x, bound, rows, starts, window):
            return None
        h = x.view(B, T, self.dim)[:, -1:].contiguous() if last_only else x.view(B, T, self.dim)  # [B, T or 1, D]
        return self.head(self.norm(h))  # [B, T or 1, V]

    def forward_ragged(self, ids: list[list[int]], cache: KVCache, rows: list[int], starts: list[int],
                       window: int | None) -> Tensor | None:
        """The logits [len(ids), V] of each sequence's last token, all fed in one native call; None without it."""
        bound = self.bind(cache)
        if bound.blocks is None:
            return None
        # the single tokens (decoding rows) first, then the prompt chunks: the kernels take the rows being
        # decoded as the leading ones; the logits come back in the given order
        order = sorted(range(len(ids)), key=lambda b: len(ids[b]) > 1)
        ids, rows, starts = [ids[b] for b in order], [rows[b] for b in order], [starts[b] for b in order]
        lengths = [len(seq) for seq in ids]
        x = self.embed(torch.tensor([t for seq in ids for t in seq], dtype=torch.long))  # [N, D]
        bound.blocks.run(x, token_spans(rows, starts, lengths, window), lengths.count(1))
        last = torch.tensor(lengths).cumsum(0) - 1  # [B]: each sequence's last row
        logits = self.head(self.norm(x[last]))  # [B, V] in sorted order
        return logits[torch.tensor(order).argsort()]

    def _layer_loop(self, x: Tensor, bound: CacheBinding, rows: list[int], starts: list[int],
                    window: int | None) -> bool:
        """One token a row through the blocks, x [B, D] in place, a Python loop over the layers; False where
        neither attention step takes these rows."""
        B = x.shape[0]
        attend: Callable[[int, Tensor], Tensor]
        if bound.layers is not None:
            layers, meta = bound.layers, token_spans(rows, starts, [1] * B, window)  # [B, 3]
            att = torch.empty(B, self.n_heads * self.head_dim, dtype=ACT_DTYPE)  # each layer's attention output

            def attend(i: int, qkv: Tensor) -> Tensor:
                layers.step(i, qkv, meta, att)
                return att
        elif rows == list(range(rows[0], rows[0] + B)) and all(s == starts[0] for s in starts):
            attend = self._torch_attention(bound.views(slice(rows[0], rows[0] + B)), B, starts[0], window)
        else:
            return False
        h = {dtype: torch.empty(B, self.dim, dtype=dtype) for dtype in (ACT_DTYPE, torch.float32)}  # norms' outputs
        for i, layer in enumerate(self.layers):
            x.add_(layer.o(attend(i, layer.qkv(rms_norm(x, layer.attn_norm, self.eps, out=h[layer.qkv_in])))))
            x.add_(layer.down(silu_mul(layer.gate_up(rms_norm(x, layer.mlp_norm, self.eps, out=h[layer.gate_up_in])))))
        return True

    def _torch_attention(self, views: list[tuple[Tensor, Tensor, Tensor, Tensor]], B: int, s: int,
                         window: int | None) -> Callable[[int, Tensor], Tensor]:
        """The fused layer step in torch ops for B rows at position s: rotary embedding, cache write, attention
        over keys lo..s (as the generic plan slices them)."""
        Hq, Hkv, hd, half = self.n_heads, self.n_kv_heads, self.head_dim, self.head_dim // 2
        lo = first_key(s, window)
        cos, sin = self.cos[s], self.sin_signed[s]  # [hd]
        spans = torch.tensor([[0, s + 1 - lo]] * B)  # [B, 2] over the keys lo..s
        split = ((Hq + Hkv) * hd, Hkv * hd)

        def attend(i: int, qkv: Tensor) -> Tensor:
            qk, v = qkv.split(split, dim=-1)  # [B, (Hq + Hkv)·hd], [B, Hkv·hd]
            qk = qk.view(B, Hq + Hkv, hd)
            qk = qk * cos + qk.roll(half, dims=-1) * sin  # rotate-half RoPE, rounding as `apply_rope` does
            k_cache, v_cache, k_at, v_at = views[i]  # [B, Hkv, max_len, hd] ×2, then [max_len, B, Hkv, hd] ×2
            k_at[s] = qk[:, Hq:]
            v_at[s] = v.view(B, Hkv, hd)
            y = decode_attention(qk[:, :Hq], k_cache[:, :, lo:s + 1], v_cache[:, :, lo:s + 1], spans)  # [B, Hq, hd]
            return y.view(B, Hq * hd)

        return attend


class FastTransformer(Transformer):
    """The fast model (see the module docstring): the generic `Transformer` plus its lean path, `plan`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.plan: DecodePlan | None = None

    @property
    def dtype(self) -> torch.dtype:
        """bf16: the activations between the matmuls and the KV cache (the residual stream is fp32)."""
        return ACT_DTYPE

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    def bind(self) -> FastTransformer:
        """Bind the lean path to the weights now in place (after they change, bind again)."""
        self.plan = DecodePlan.of(self)
        return self

    def forward(self, ids: Tensor, cache: KVCache | None = None, start: Tensor | int | None = None,
                rows: Tensor | None = None, last_only: bool = False) -> Tensor:
        B, T = ids.shape
        if cache is not None and self.plan is not None and 1 <= T <= NATIVE_PREFILL_MAX:
            row_list, starts = row_starts(B, cache, start, rows, T, self.rope.max_len)
            logits = self.plan.forward(ids, cache, row_list, starts, self.config.sliding_window, last_only)
            if logits is not None:
                return logits
        return super().forward(ids, cache, start, rows, last_only)

    def forward_ragged(self, ids: list[list[int]], cache: KVCache, rows: list[int], starts: list[int]) -> Tensor | None:
        """Sequences of any lengths (each ≤ NATIVE_PREFILL_MAX) fed into cache rows `rows` at positions `starts`,
        all in one native step (a server step: one token of every decoding row and a prompt chunk): the
        logits of each sequence's last token [len(ids), V]; None where the native step cannot run them (the
        caller then runs them in uniform batches). Rows and positions are checked as the generic forward
        checks them (ValueError, ContextLengthError)."""
        lengths = [len(seq) for seq in ids]
        if self.plan is None or not lengths or min(lengths) < 1 or max(lengths) > NATIVE_PREFILL_MAX:
            return None
        row_starts(len(ids), cache, starts, rows, lengths, self.rope.max_len)
        return self.plan.forward_ragged(ids, cache, rows, starts, self.config.sliding_window)
