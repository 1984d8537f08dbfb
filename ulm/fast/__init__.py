"""µLM's fast mode on CPU: what `ulm.load(..., mode="fast")` runs.

`load_fast(source, device="cpu", scheme="int4")` is the entry point: the fast model of a resolved
checkpoint, built straight from its converted tensors in the model cache (no float model in memory) when
the cache holds them, else converted once. `make_fast(module, source=None, dtype=torch.bfloat16,
scheme="int4")` converts an already built fp32 `Transformer` (its submodules are reused). The result is a
`FastTransformer`:

- every linear is an `ulm.quant.Int4Linear` (int8 where the int4 kernel does not take the shape, or with
  scheme="int8"): bf16 activations in, bf16 out, repacked for µLM's native int4 kernel where the CPU has
  AVX-512 VNNI. GGUF Q4_0/Q4_1 tensors are packed losslessly from the file's blocks; prefill-sized inputs
  run a dense bf16 GEMM on the unpacked weight;
- the LM head is a `RefinedHead`: int4 logits rank the vocabulary, the top 64 are recomputed from the
  bf16 table (fp32 logits out), so greedy decoding picks what a dense head would;
- the residual stream stays fp32 (the embedding table is bf16, looked up and widened), so every RMSNorm
  runs in fp32 and rounding does not pile up over the layers; attention, the KV cache and the MLP run in
  bf16 (the caller allocates the cache in the embedding's dtype); the rotary tables are bf16;
- decode steps, short prefills and the server's ragged steps (`forward_ragged`) take a lean path over
  tensors bound once, on the native kernels where they are built (`ulm.kernels`), bit-identical to the
  generic forward.

The package, one job a module:

    runtime.py   FastTransformer: the lean path (DecodePlan, bound per KV cache) and the generic fallback
    modules.py   WideningEmbedding, RefinedHead
    convert.py   float weights and GGUF blocks → the fast tensors → a FastTransformer; make_fast, load_fast,
                 fast_tensors (kept in the model cache, `ulm.loading.cache`)
"""

from ulm.fast.convert import fast_tensors, load_fast, make_fast
from ulm.fast.modules import RefinedHead, WideningEmbedding
from ulm.fast.runtime import FastTransformer

__all__ = ["FastTransformer", "RefinedHead", "WideningEmbedding", "fast_tensors", "load_fast", "make_fast"]
