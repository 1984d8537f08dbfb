"""MHA → GQA (or GQA → fewer KV heads): each group's key and value heads mean-pooled into one (Ainslie et al.
2023, "GQA": the uptraining initialisation), then `ulm train --init` uptrains the result.

Query head i attends with KV head i // n_rep. Going from H_kv to H_kv' = H_kv / g heads, new KV head j
replaces old heads j·g .. j·g + g − 1, which are exactly the heads its queries used before, so pooling
consecutive groups keeps every query with the keys it was trained against. With g = 1 the weights are
copied unchanged (a mean of one); q, o, the MLP and the norms never change.
"""

from __future__ import annotations

import torch

from ulm.config import ModelConfig
from ulm.convert.errors import ConvertError


def pool_heads(t: torch.Tensor, n_old: int, n_new: int) -> torch.Tensor:
    """Rows [n_old·hd, ...] → [n_new·hd, ...]: each group of n_old / n_new consecutive heads averaged."""
    rows = t.shape[0]
    hd = rows // n_old
    grouped = t.reshape(n_new, n_old // n_new, hd, *t.shape[1:])  # [H', g, hd, ...]
    return grouped.mean(dim=1).reshape(n_new * hd, *t.shape[1:])


def to_gqa(config: ModelConfig, state: dict[str, torch.Tensor],
           n_kv_heads: int) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config with n_kv_heads, canonical state with pooled attn.wk / attn.wv weights and biases)."""
    old = config.n_kv_heads
    assert old is not None
    if n_kv_heads <= 0 or old % n_kv_heads:
        raise ConvertError(f"--kv-heads {n_kv_heads} must divide the model's {old} key/value heads "
                           f"(e.g. {', '.join(str(d) for d in range(1, old + 1) if old % d == 0)})")
    out = {}
    for name, tensor in state.items():
        pooled = ".attn.wk." in name or ".attn.wv." in name
        out[name] = pool_heads(tensor.float(), old, n_kv_heads).to(tensor.dtype) if pooled else tensor
    return config.with_(n_kv_heads=n_kv_heads), out
