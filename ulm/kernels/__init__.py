"""µLM's native CPU kernels: plain C compiled on first use (`native`: ulm_kernels.c, and ulm_int4.c's int4
matmul for AVX-512 VNNI CPUs), called through ctypes with torch fallbacks (`attention`, `activations`)."""
