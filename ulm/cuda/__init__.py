"""µLM on NVIDIA GPUs: the same Transformer, KV cache, engine, sampler and server, with what a GPU needs to
decode near its memory bandwidth.

- `graphs`: decode steps captured as CUDA graphs, one per (batch bucket, key bucket), over static input
  buffers and the pre-allocated KV cache; the step itself (`decode_step`) is plain torch and also runs
  eagerly on the CPU, which is how the CPU tests cover it.
- `weight_only`: int8 (per output row) and int4 (groups of 32, torch's tinygemm layout) weight-only linears
  for CUDA, and `quantize_for_cuda`, which swaps them in.

`ulm.load(ref, device="cuda")` builds the model in bf16 on the GPU (`quant="int8"` or `"int4"` for
weight-only linears); `UlmBackend` then allocates the whole KV cache at once (plus one scratch row that
padded graph rows write to) and runs every decode step through `GraphDecoder`. Prefill runs eagerly,
through SDPA's flash kernels.
"""
