"""µLM's native CPU kernels: plain C compiled on first use (`native`), with torch fallbacks (`attention`)."""
