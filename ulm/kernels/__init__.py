"""µLM's native CPU kernels: plain C compiled on first use into one library (`native`: ulm_kernels.c's attention,
norms and LM-head refinement, ulm_sample.c's sampler, ulm_kquant.c's repack of GGUF block quants into their tile
layout, and for AVX-512 VNNI CPUs ulm_int4.c's int4 matmul, ulm_decode.c's one-call decode step and
ulm_kquant_mm.c's block-quant matmul), called through ctypes with torch fallbacks (`attention`, `activations`,
`decode`, `ulm.kquant`'s reference, and `ulm.sampling`'s torch ops)."""
