"""µLM's fast mode on CPU: what `ulm.load(..., mode="fast")` runs.

`load_fast(source, device="cpu", scheme="int4")` is the entry point: the fast model of a resolved
checkpoint, built straight from the fast-weights cache (no float model in memory) when the cache holds
it, else converted once. `make_fast(module, source=None, dtype=torch.bfloat16, scheme="int4")` converts an
already built fp32 `Transformer` (its submodules are reused) and returns the fast model. The result is a
`FastTransformer`:

- every linear (fused q/k/v, output, fused gate/up, down, and the LM head, tied or not) becomes an
  `ulm.quant.Int4Linear` (int8 where the int4 kernel does not take the shape, or with scheme="int8"):
  bf16 activations in, bf16 out, repacked for µLM's native int4 kernel where the CPU has AVX-512 VNNI
  (`Int4Linear.use_native_kernel`). GGUF Q4_0/Q4_1 tensors are packed losslessly from the file's blocks;
  prefill-sized inputs run a dense bf16 GEMM on the unpacked weight;
- the LM head is a `RefinedHead`: int4 logits rank the vocabulary, the top 64 are recomputed from the
  bf16 table (fp32 logits out), so greedy decoding picks what a dense head would;
- the residual stream stays fp32 (the embedding table is bf16, looked up and widened), so every RMSNorm
  runs in fp32 and rounding does not pile up over the layers; attention, the KV cache and the MLP run in
  bf16 (`Generator` allocates the cache in the embedding's dtype); the rotary tables are bf16;
- one-token decode steps run a lean loop (`FastTransformer._decode`) on the native fused layer step where
  the kernels are built (`ulm.kernels`), bit-identical to the generic forward; where the linears run µLM's
  int4 kernel, all blocks run in one native call, and so do prefills of up to NATIVE_PREFILL_MAX tokens
  (equal to decoding their tokens one at a time) and the server's ragged steps (`forward_ragged`: decode
  rows and prompt chunks together).

The converted tensors are cached next to the loader's converted checkpoint, in
`<model cache>/<fingerprint>/fast-<scheme>-v<FAST_VERSION>.safetensors` (written to a temp file and
renamed; a damaged file is rebuilt), so only the first fast load of a GGUF file quantises. Without a
source (or for HF directories) the weights are quantised at every load, from the module's float weights
(lossless for Q4_1 sources too: min/max over a dequantised Q4_1 group lands on its grid).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ulm.config import ModelConfig
from ulm.kernels.activations import silu_mul
from ulm.kernels.attention import DecodeLayers, decode_attention
from ulm.kernels.decode import DecodeBlocks
from ulm.kernels.native import library
from ulm.kv_cache import KVCache
from ulm.layers.norm import RMSNorm, rms_norm
from ulm.model import Transformer
from ulm.quant import GROUP, Int4Linear, Int8Linear, quantize_model
from ulm.registry import ModelSource

FAST_VERSION = 1
ACT_DTYPE = torch.bfloat16
# Prefills of at most this many tokens a row run on the native step of all blocks (where it runs): a chat
# turn's new tokens after prefix reuse, the server's prompt chunks. Measured on the embedded model at
# position 200: 21 tokens in 22 ms instead of 42, 256 in 261 instead of 376; level from ~384 tokens, where
# the per-query attention kernel's cost catches up with SDPA's blocked one (longer ones take that path).
NATIVE_PREFILL_MAX = 256


class WideningEmbedding(nn.Module):
    """A token embedding stored in bf16 whose lookups come out fp32 (the residual stream's dtype)."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # [V, D]

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight).float()  # [B, T, D]


class RefinedHead(nn.Module):
    """The LM head: int4 logits for the whole vocabulary, then the best candidates recomputed exactly.

    Requantising the 8-bit token embedding (tied head) to 4 bits moves logits by up to ~4, which flips the
    argmax often (84% top-1 agreement with fp32 on the benchmark text); an int8 head is exact enough but
    ~6× slower on torch's CPU kernels. So the int4 head ranks, and the candidates get their logits from the
    bf16 table with fp32 accumulation: the argmax and the head of the distribution are those of a dense
    head. Logits outside the candidates keep the int4 value.

    The candidates are every logit at or above the k-th largest of the per-chunk maxima (chunks of
    `CHUNK`): a superset of the top k (k chunks hold a logit at least that large), found with a max per
    chunk, a top-k over the few hundred chunk maxima and one comparison, where `topk` over 49k logits
    costs 0.1-0.5 ms on the CPU (it is data dependent). Usually a little over k candidates.
    """

    CHUNK = 128

    def __init__(self, coarse: nn.Module, weight: Tensor, k: int = 64) -> None:
        super().__init__()
        self.coarse = coarse
        self.weight = weight  # [V, D] bf16: the embedding's table when tied (shared, not copied)
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        logits = self.coarse(x)  # [..., V] fp32
        V, D = self.weight.shape
        rows, xs = logits.view(-1, V), x.reshape(-1, D).float().contiguous()  # [N, V], [N, D]
        lib = library() if self.weight.dtype == torch.bfloat16 and self.weight.is_contiguous() else None
        if lib is not None and logits.is_contiguous() and logits.device.type == "cpu":
            # the same candidates, found and recomputed for every row in one native call
            if lib.ulm_refine_logits(rows.data_ptr(), rows.shape[0], V, self.weight.data_ptr(), D, xs.data_ptr(),
                                     self.k, self.CHUNK) < 0:
                raise MemoryError("no memory for the LM head's refinement")
            return logits
        for row, h in zip(rows, xs, strict=True):
            idx = self.candidates(row)  # [n]
            row[idx] = F.embedding(idx, self.weight).float() @ h  # [n, D] @ [D] → [n]
        return logits

    def candidates(self, row: Tensor) -> Tensor:
        """Indices of a superset of the k largest entries of row [V] (all of them when there are at most k chunks)."""
        V = row.shape[0]
        if self.k * self.CHUNK >= V:
            return torch.arange(V, device=row.device)
        whole = V // self.CHUNK * self.CHUNK
        maxima = row[:whole].view(-1, self.CHUNK).amax(-1)  # [V / CHUNK]
        if whole < V:
            maxima = torch.cat((maxima, row[whole:].amax(-1, keepdim=True)))
        threshold = maxima.topk(self.k, sorted=False).values.min()
        return (row >= threshold).nonzero().squeeze(1)


def _matmul(lin: nn.Module) -> Callable[[Tensor], Tensor]:
    """A direct call of a linear on a 2-D input [M, K] → [M, N], skipping the module's reshapes and casts."""
    if type(lin) is Int4Linear and lin.bias is None and lin.out_dtype == lin.dtype:
        if lin.layout == "vnni":
            return lin.matmul
        packed, sz = lin.packed, lin.scales_zeros
        return lambda h: torch._weight_int4pack_mm_for_cpu(h, packed, GROUP, sz)
    return lin


class FastTransformer(Transformer):
    """The fast model: a `Transformer` whose one-token decode steps run a lean loop with the per-layer tensors
    bound once, the same arithmetic as the generic forward without its module calls and plan objects:

    - with the native kernels (`ulm.kernels`), every decode step (rows at any positions, any cache rows: the
      server's batch too) runs each layer's rotary embedding, cache write and attention in one foreign
      call (`DecodeLayers`);
    - without them, steps whose rows share one position in contiguous cache rows (single-sequence chat,
      the bench) run the same loop in torch ops, and other steps the generic forward.

    Prefill and layer variants the loop does not cover (non-RMSNorm, non-SwiGLU) take `Transformer.forward`.
    Both loops equal the generic forward bit for bit (tested).
    """

    def bind(self) -> FastTransformer:
        """Collect each layer's callables and tensors for the decode loop (after the weights are in place)."""
        c = self.config
        assert c.head_dim is not None and c.n_kv_heads is not None
        plain = c.norm == "rmsnorm" and c.mlp == "swiglu" and isinstance(self.norm, RMSNorm)
        self._layers = []
        for block in self.layers:
            attn, mlp = block.attn, block.mlp
            plain = plain and isinstance(block.attn_norm, RMSNorm) and isinstance(block.mlp_norm, RMSNorm)
            self._layers.append((block.attn_norm.weight, _matmul(attn.wqkv), _matmul(attn.wo), block.mlp_norm.weight,
                                 _matmul(mlp.w_gate_up), _matmul(mlp.w_down)))
        self._plain = plain
        self._eps = c.norm_eps
        self._split = (c.n_heads * c.head_dim + c.n_kv_heads * c.head_dim, c.n_kv_heads * c.head_dim)
        half = c.head_dim // 2
        # rotate_half(x)·sin = roll(x, half)·(−sin₁, sin₂): one roll instead of two slices, a negation and a cat
        self._sin_signed = torch.cat((-self.rope.sin[:, :half], self.rope.sin[:, half:]), dim=-1)  # [max_len, hd]
        return self

    def forward(self, ids: Tensor, cache: KVCache | None = None, start: Tensor | int | None = None,
                rows: Tensor | None = None, last_only: bool = False) -> Tensor:
        T = ids.shape[1]
        if cache is not None and 1 <= T <= NATIVE_PREFILL_MAX and getattr(self, "_plain", False):
            step = self._step(ids.shape[0], cache, start, rows, T)
            if step is not None:
                logits = self._decode(ids, cache, *step) if T == 1 else self._prefill(ids, cache, *step, last_only)
                if logits is not None:
                    return logits
        return super().forward(ids, cache, start, rows, last_only)

    def _step(self, batch: int, cache: KVCache, start: Tensor | int | None, rows: Tensor | None,
              tokens: int = 1) -> tuple[list[int], list[int]] | None:
        """(cache rows, first positions) of a step of `tokens` tokens a row; None where the generic path must
        judge (and raise)."""
        row_list = list(range(batch)) if rows is None else [int(r) for r in rows.tolist()]
        if start is None:
            start = cache.lengths[row_list]
        got = start.tolist() if isinstance(start, Tensor) else start
        starts = [int(got)] * batch if isinstance(got, int) else [int(s) for s in got]
        if len(row_list) != batch or len(starts) != batch or not 0 <= min(row_list) <= max(row_list) < cache.max_batch:
            return None
        if min(starts) < 0 or max(starts) + tokens > min(cache.max_len, self.rope.max_len):
            return None  # the generic path raises the context error
        return row_list, starts

    def _fused_layers(self, cache: KVCache) -> DecodeLayers | None:
        """The native fused step bound to this cache (kept while the same cache decodes), None without it."""
        key = (id(cache), cache.k.data_ptr())
        if getattr(self, "_fused_key", None) != key:
            assert self.config.n_heads is not None
            self._fused = DecodeLayers.make(cache.k, cache.v, self.rope.cos, self._sin_signed, self.config.n_heads)
            self._fused_key = key
        return self._fused

    def _cache_views(self, cache: KVCache, rows: slice) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Each layer's K and V views of these cache rows, [B, Hkv, max_len, hd], and the same with positions
        first (to write one position with a single index), kept while the same cache and rows decode;
        holding them keeps that cache's buffers alive until another cache decodes."""
        key = (id(cache), cache.k.data_ptr(), rows.start, rows.stop)
        if getattr(self, "_views_key", None) != key:
            views = []
            for i in range(len(self._layers)):
                k, v = cache.k[i, rows], cache.v[i, rows]
                views.append((k, v, k.permute(2, 0, 1, 3), v.permute(2, 0, 1, 3)))
            self._views, self._views_key = views, key
        return self._views

    def _decode(self, ids: Tensor, cache: KVCache, row_list: list[int], starts: list[int]) -> Tensor | None:
        """Logits [B, 1, V] of one token per row (ids [B, 1]) at positions `starts` of cache rows `row_list`;
        None when neither loop takes this step."""
        window = self.config.sliding_window
        lows = [0 if window is None else max(0, s - window + 1) for s in starts]
        fused = self._fused_layers(cache)
        if fused is not None:
            meta = torch.tensor([[r, lo, s + 1] for r, lo, s in zip(row_list, lows, starts, strict=True)])  # [B, 3]
            return self._decode_fused(ids, fused, meta)
        first = row_list[0]
        if row_list != list(range(first, first + len(row_list))) or any(s != starts[0] for s in starts):
            return None
        return self._decode_torch(ids, cache, starts[0], lows[0], slice(first, first + len(row_list)))

    def _prefill(self, ids: Tensor, cache: KVCache, row_list: list[int], starts: list[int],
                 last_only: bool) -> Tensor | None:
        """A short prefill (ids [B, T], T ≤ NATIVE_PREFILL_MAX) on the native step of all blocks: each token is
        one row of the step, attending to its own sequence up to itself (the step writes every row's keys
        before any row attends), so it equals feeding the tokens one step at a time, bit for bit (tested).
        Logits [B, T or 1, V]; None where the native step cannot run."""
        B, T = ids.shape
        x = self._native_rows(self.embed(ids).view(B * T, self.config.dim), cache, row_list, starts, [T] * B)
        if x is None:
            return None
        x = x.view(B, T, -1)[:, -1:].contiguous() if last_only else x.view(B, T, -1)  # [B, T or 1, D]
        return self.lm_head(self.norm(x))  # [B, T or 1, V]

    def forward_ragged(self, ids: list[list[int]], cache: KVCache, rows: list[int], starts: list[int]) -> Tensor | None:
        """Sequences of any lengths (each ≤ NATIVE_PREFILL_MAX) fed into cache rows `rows` at positions `starts`,
        all in one native step (a server step: one token of every decoding row and a prompt chunk): the
        logits of each sequence's last token [len(ids), V]; None where the native step cannot run them (the
        caller then runs them in uniform batches)."""
        lengths = [len(seq) for seq in ids]
        if not getattr(self, "_plain", False) or not lengths or min(lengths) < 1 or max(lengths) > NATIVE_PREFILL_MAX:
            return None
        if not 0 <= min(rows) <= max(rows) < cache.max_batch or min(starts) < 0:
            return None
        if any(s + n > min(cache.max_len, self.rope.max_len) for s, n in zip(starts, lengths, strict=True)):
            return None
        flat = torch.tensor([t for seq in ids for t in seq], dtype=torch.long)  # [N]
        x = self._native_rows(self.embed(flat), cache, rows, starts, lengths)  # [N, D]
        if x is None:
            return None
        last = torch.tensor(lengths).cumsum(0) - 1  # [B]: each sequence's last row
        return self.lm_head(self.norm(x[last]))  # [B, V]

    def _native_rows(self, x: Tensor, cache: KVCache, rows: list[int], starts: list[int],
                     lengths: list[int]) -> Tensor | None:
        """x [N, D] fp32: the embedded tokens of sequences of `lengths` (N in all), sequence b going into cache
        row rows[b] from position starts[b]; taken through every block in one native call, in place (each
        token one row of the step). None where the native step cannot run."""
        fused = self._fused_layers(cache)
        blocks = None if fused is None else self._decode_blocks(fused)
        if blocks is None:
            return None
        window = self.config.sliding_window
        meta = torch.tensor([[r, 0 if window is None else max(0, p - window + 1), p + 1]
                             for r, s, n in zip(rows, starts, lengths, strict=True) for p in range(s, s + n)])  # [N, 3]
        blocks.run(x, meta)
        return x

    def _decode_blocks(self, fused: DecodeLayers) -> DecodeBlocks | None:
        """Every block's step in one native call, bound to `fused`'s cache; None where it cannot run."""
        if getattr(self, "_blocks_for", None) is not fused:
            parts = [(b.attn_norm.weight, b.attn.wqkv, b.attn.wo, b.mlp_norm.weight, b.mlp.w_gate_up, b.mlp.w_down)
                     for b in self.layers]
            self._blocks = DecodeBlocks.make(fused, parts, self._eps)  # type: ignore[arg-type]
            self._blocks_for = fused
        return self._blocks

    def _decode_fused(self, ids: Tensor, fused: DecodeLayers, meta: Tensor) -> Tensor:
        """The lean loop on the native fused step (all blocks in one native call where the linears run µLM's
        int4 kernel, else a Python loop over the per-layer kernels). ids [B, 1], meta [B, 3] (see DecodeLayers)."""
        c = self.config
        B, D, hd = ids.shape[0], c.dim, c.head_dim
        assert hd is not None
        x = self.embed(ids).view(B, D)  # [B, D] fp32 residual
        blocks = self._decode_blocks(fused)
        if blocks is not None:
            blocks.run(x, meta)
            return self.lm_head(self.norm(x)).view(B, 1, -1)  # [B, 1, V]
        h = torch.empty(B, D, dtype=ACT_DTYPE)  # each norm's output, consumed at once by the next matmul
        att = torch.empty(B, c.n_heads * hd, dtype=ACT_DTYPE)  # each layer's attention output
        eps = self._eps
        for i, (n1, qkv_mm, o_mm, n2, gu_mm, down_mm) in enumerate(self._layers):
            fused.step(i, qkv_mm(rms_norm(x, n1, eps, out=h)), meta, att)  # [B, (Hq + 2·Hkv)·hd] → att
            x.add_(o_mm(att))
            x.add_(down_mm(silu_mul(gu_mm(rms_norm(x, n2, eps, out=h)))))  # [B, 2F] → [B, F] → [B, D]
        return self.lm_head(self.norm(x)).view(B, 1, -1)  # [B, 1, V]

    def _decode_torch(self, ids: Tensor, cache: KVCache, s: int, lo: int, rows: slice) -> Tensor:
        """The lean loop in torch ops: every row at position s attending to lo..s, cache rows `rows`. ids [B, 1]."""
        c = self.config
        B, D, hd, Hq, Hkv = ids.shape[0], c.dim, c.head_dim, c.n_heads, c.n_kv_heads
        assert hd is not None and Hkv is not None
        act = ACT_DTYPE if isinstance(self.embed, WideningEmbedding) else self.embed.weight.dtype
        cos, sin = self.rope.cos[s], self._sin_signed[s]  # [hd]
        half = hd // 2
        x = self.embed(ids).view(B, D)  # [B, D] fp32 residual
        h = torch.empty(B, D, dtype=act)  # each norm's output, consumed at once by the next matmul
        eps = self._eps
        views = self._cache_views(cache, rows)
        spans = torch.tensor([[0, s + 1 - lo]] * B)  # [B, 2] over the keys lo..s, as the generic plan has them
        for i, (n1, qkv_mm, o_mm, n2, gu_mm, down_mm) in enumerate(self._layers):
            qk, v = qkv_mm(rms_norm(x, n1, eps, out=h)).split(self._split, dim=-1)  # [B, (Hq+Hkv)·hd], [B, Hkv·hd]
            qk = qk.view(B, Hq + Hkv, hd)
            qk = qk * cos + qk.roll(half, dims=-1) * sin  # rotate-half RoPE, rounding as `apply_rope` does
            k_cache, v_cache, k_at, v_at = views[i]  # [B, Hkv, max_len, hd] ×2, then [max_len, B, Hkv, hd] ×2
            k_at[s] = qk[:, Hq:]
            v_at[s] = v.view(B, Hkv, hd)
            y = decode_attention(qk[:, :Hq], k_cache[:, :, lo:s + 1], v_cache[:, :, lo:s + 1], spans)  # [B, Hq, hd]
            x.add_(o_mm(y.view(B, Hq * hd)))
            x.add_(down_mm(silu_mul(gu_mm(rms_norm(x, n2, eps, out=h)))))  # [B, 2F] → [B, F] → [B, D]
        return self.lm_head(self.norm(x)).view(B, 1, -1)  # [B, 1, V]


def _adopt(module: Transformer) -> FastTransformer:
    """A FastTransformer holding `module`'s submodules (no weights copied)."""
    if isinstance(module, FastTransformer):
        return module
    with torch.device("meta"):
        fast = FastTransformer(module.config)
    for name, child in module.named_children():
        setattr(fast, name, child)
    return fast


def _linear_names(module: Transformer) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear | Int4Linear | Int8Linear)]


def _norm_params(module: Transformer) -> dict[str, Tensor]:
    """Every parameter that is not in a linear or the embedding: the norms' weights (and biases)."""
    linears = tuple(f"{n}." for n in _linear_names(module))
    return {k: v for k, v in module.state_dict().items() if not k.startswith(linears) and not k.startswith("embed.")}


def _fast_tensors(module: Transformer, source: ModelSource | None, scheme: str) -> dict[str, Tensor]:
    """The fast model's tensors, quantised from the best float weights available (the source's fp32 ones,
    and its raw 4-bit blocks when it is a GGUF file)."""
    from ulm.model import build_model

    raw: Mapping[str, object] = {}
    reference = module
    if source is not None:
        from ulm.loading import load_checkpoint

        config, state = load_checkpoint(source, torch.float32)  # mmap'd fp32 (the loader's cache)
        reference = build_model(config, state, torch.float32)
        if source.kind == "gguf":
            from ulm.loading import read_gguf_blocks

            raw = read_gguf_blocks(source.path)[1]
    tensors = {k: v.float() for k, v in _norm_params(reference).items()}
    tensors["embed.weight"] = reference.embed.weight.detach().to(ACT_DTYPE)
    if not reference.config.tie_embeddings:
        tensors["lm_head.table"] = reference.lm_head.weight.detach().to(ACT_DTYPE)  # for RefinedHead
    quantize_model(reference, scheme, raw, ACT_DTYPE, out_dtypes={"lm_head": torch.float32})  # type: ignore[arg-type]
    for name in _linear_names(reference):
        for key, value in reference.get_submodule(name).state_dict().items():
            tensors[f"{name}.{key}"] = value
    return {k: v.contiguous() for k, v in tensors.items()}


def _install(module: Transformer, tensors: Mapping[str, Tensor]) -> FastTransformer:
    """Swap `module`'s embedding, norms' weights and linears for the fast ones held in `tensors`."""
    module.embed = WideningEmbedding(tensors["embed.weight"])
    for name in _linear_names(module):
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        bias = tensors.get(f"{name}.bias")
        out = torch.float32 if name == "lm_head" else ACT_DTYPE
        if f"{name}.packed" in tensors:
            new: nn.Module = Int4Linear(tensors[f"{name}.packed"], tensors[f"{name}.scales_zeros"], bias,
                                        ACT_DTYPE, out)
        else:
            new = Int8Linear(tensors[f"{name}.weight"], tensors[f"{name}.scales"], bias, ACT_DTYPE, out)
        setattr(parent, attr, new)
    for key in _norm_params(module):
        owner_name, _, attr = key.rpartition(".")
        owner = module.get_submodule(owner_name)
        setattr(owner, attr, nn.Parameter(tensors[key], requires_grad=False))
    for linear in module.modules():
        if isinstance(linear, Int4Linear):
            linear.use_native_kernel()
    table = module.embed.weight if module.config.tie_embeddings else tensors["lm_head.table"]
    module.lm_head = RefinedHead(module.lm_head, table)
    module.rope.rebuild(ACT_DTYPE, tensors["embed.weight"].device)
    module.requires_grad_(False)
    return _adopt(module).eval().bind()


def _cache_file(source: ModelSource | None, scheme: str) -> Path | None:
    if source is None or source.kind != "gguf":
        return None
    from ulm.loading.cache import cache_entry

    return cache_entry(source.path) / f"fast-{scheme}-v{FAST_VERSION}.safetensors"


def _save(path: Path, tensors: Mapping[str, Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(dict(tensors), tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def fast_tensors(module: Transformer, source: ModelSource | None = None, scheme: str = "int4") -> dict[str, Tensor]:
    """The fast model's tensors for `source` (mapped from the cache when there), else quantised (and cached)."""
    path = _cache_file(source, scheme)
    if path is not None and path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        with contextlib.suppress(OSError, ValueError, RuntimeError, SafetensorError):  # damaged: rebuilt below
            return load_file(str(path))
    tensors = _fast_tensors(module, source, scheme)
    if path is not None:
        _save(path, tensors)
    return tensors


def make_fast(module: Transformer, source: ModelSource | None = None, dtype: torch.dtype = ACT_DTYPE,
              scheme: str = "int4") -> FastTransformer:
    """The fast model of a built `module` (see the module docstring): its submodules are converted in place
    and adopted by the returned FastTransformer, so use the return value. `source` (the checkpoint the
    module was built from) makes the conversion lossless for 4-bit GGUF tensors and lets it be cached.
    Only bf16 activations are supported on CPU: other `dtype`s raise ValueError."""
    if dtype != ACT_DTYPE:
        raise ValueError(f"the fast mode runs bf16 activations, not {dtype}")
    return _install(module, fast_tensors(module, source, scheme))


def load_fast(source: ModelSource, device: torch.device | str = "cpu", scheme: str = "int4") -> FastTransformer:
    """The fast model of `source`, built from the fast cache on the meta device (no float model in memory)
    when the cache holds it; otherwise converted once (and cached) first."""
    path = _cache_file(source, scheme)
    if path is None or not path.is_file():
        from ulm.loading import load_checkpoint
        from ulm.model import build_model

        config, state = load_checkpoint(source, torch.float32)
        return make_fast(build_model(config, state, torch.float32, device), source, scheme=scheme)
    config = ModelConfig.from_dict(json.loads((path.parent / "config.json").read_text(encoding="utf-8")))
    with torch.device("meta"):
        module = FastTransformer(config)
    return _install(module, {k: v.to(device) for k, v in fast_tensors(module, source, scheme).items()})
