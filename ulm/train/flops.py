"""Training FLOPs per token, the device's peak FLOP/s, and model FLOPs utilisation (MFU).

- `flops_per_token(config, seq_len)` = 6·N + 12·L·H·hd·T (PaLM, appendix B; nanoGPT's estimate): N counts
  the weights of every matmul (attention, MLP, the LM head: the tied embedding once, an untied input
  embedding not at all, since a lookup does no arithmetic; norms excluded), 6 = forward 2 + backward 4 FLOPs
  per weight and token; the attention term counts QKᵀ and AV over the full T×T (causal masking's saving
  is not subtracted, as in PaLM's formula).
- `peak_flops(device, bf16)`: dense bf16 tensor-core peak for known GPUs (H100 SXM/H200 989 TFLOP/s, H100
  PCIe 756, A100 312, ...; fp32 runs are counted against TF32, half of that); on a CPU there is no
  datasheet figure to trust, so it is measured: the best of a few large matmuls in the run's dtype
  (`source` says "measured matmul"). ULM_PEAK_TFLOPS overrides either.
- `mfu(tokens_per_s, flops_per_token, peak)` for one device; with DDP pass tokens/s per device.
"""

from __future__ import annotations

import functools
import os
import time

import torch

from ulm.config import ModelConfig

# Dense bf16 peak (no sparsity), by a substring of torch.cuda.get_device_name(); first match wins.
GPU_BF16_PEAK = (
    ("H200", 989e12), ("GH200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
    ("H800", 989e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12),
    ("RTX 4090", 165e12), ("RTX 3090", 71e12), ("V100", 125e12), ("T4", 65e12),
)


def matmul_params(config: ModelConfig) -> int:
    """Weights that take part in a matmul per token (see the module docstring)."""
    norms = (2 * config.n_layers + 1) * config.dim * (2 if config.norm == "layernorm" else 1)
    lookup = 0 if config.tie_embeddings else config.vocab_size * config.dim
    return config.n_params() - norms - lookup


def flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token at sequence length `seq_len`."""
    assert config.head_dim is not None
    return 6.0 * matmul_params(config) + 12.0 * config.n_layers * config.n_heads * config.head_dim * seq_len


@functools.lru_cache(maxsize=4)
def _measured_cpu_peak(dtype: torch.dtype) -> float:
    n = 1024
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * n**3 / best


def peak_flops(device: torch.device, bf16: bool) -> tuple[float, str]:
    """(peak FLOP/s of one device, where the figure comes from)."""
    override = os.environ.get("ULM_PEAK_TFLOPS")
    if override:
        return float(override) * 1e12, "ULM_PEAK_TFLOPS"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_BF16_PEAK:
            if key in name:
                return (peak, f"{name} bf16 datasheet") if bf16 else (peak / 2, f"{name} tf32 datasheet")
        return float("nan"), f"{name}: unknown peak (set ULM_PEAK_TFLOPS)"
    dtype = torch.bfloat16 if bf16 else torch.float32
    name = str(dtype).removeprefix("torch.")
    return _measured_cpu_peak(dtype), f"measured {name} matmul, {torch.get_num_threads()} threads"


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float) -> float:
    """Model FLOPs utilisation of one device, 0..1."""
    return tokens_per_s * flops_per_tok / peak
