"""µLM's native CPU kernels: plain C compiled on first use into one library (`native`: ulm_kernels.c's attention,
norms and LM-head refinement, ulm_sample.c's sampler, and for AVX-512 VNNI CPUs ulm_int4.c's int4 matmul and
ulm_decode.c's one-call decode step), called through ctypes with torch fallbacks (`attention`, `activations`,
`decode`, and `ulm.sampling`'s torch ops)."""
