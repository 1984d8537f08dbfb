"""Causal self-attention for any number of KV heads (MHA, GQA, MQA), optional q/k/v bias, on torch SDPA.

- q, k and v come from one fused matmul (`wqkv`, rows [q | k | v]); a load_state_dict pre-hook accepts
  the canonical separate `wq`/`wk`/`wv` names and concatenates them (as gpt-fast does).
- GQA never repeats K/V: a decode step against the cache (one query token, `plan.spans` set) runs
  `ulm.kernels.attention.decode_attention` (native, each row its own key span); other single tokens fold
  the n_rep query heads of a KV group into the query-length axis ([B, Hkv, n_rep, hd] against
  [B, Hkv, S, hd]), which any SDPA kernel runs; longer queries use SDPA's `enable_gqa`.
- `AttnPlan` (built once per forward by the model, shared by all layers) says where this forward's
  tokens sit: the rotary cos/sin, the mask (None whenever causality is implicit) and, with a KV cache,
  where K/V are written and which cache positions are attended to (a view of the filled prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ulm.config import ModelConfig
from ulm.kernels.attention import decode_attention
from ulm.layers.rope import apply_rope

if TYPE_CHECKING:
    from ulm.kv_cache import KVCache


@dataclass
class AttnPlan:
    """Where one forward's tokens sit; see `Transformer._plan`."""

    cos: torch.Tensor  # [T, 1, hd] (positions shared by the rows) or [B, T, 1, hd]: broadcast over heads
    sin: torch.Tensor
    mask: torch.Tensor | None = None  # bool, True = may attend: [T, S] or [B, 1, T, S]; None = see `causal`
    causal: bool = False  # no cache, no mask: SDPA's own causal mask (query i sees keys 0..i)
    cache: KVCache | None = None
    rows: slice | torch.Tensor | None = None  # cache rows: a slice, or LongTensor [B]
    pos: slice | torch.Tensor | None = None  # write positions: a slice (all rows alike), or LongTensor [B, T]
    row_index: torch.Tensor | None = None  # LongTensor [B, 1]: the rows for writes at per-row positions
    keys: slice | None = None  # cache positions attended to
    spans: torch.Tensor | None = None  # int64 [B, 2]: one-token steps only, each row's attended keys lo ≤ t < hi


class Attention(nn.Module):
    """Multi-head attention with n_kv_heads ≤ n_heads key/value heads."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        assert config.n_kv_heads is not None and config.head_dim is not None
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.n_rep = config.n_heads // config.n_kv_heads
        self.q_size = config.n_heads * config.head_dim
        self.kv_size = config.n_kv_heads * config.head_dim
        self.wqkv = nn.Linear(config.dim, self.q_size + 2 * self.kv_size, bias=config.qkv_bias)
        self.wo = nn.Linear(self.q_size, config.dim, bias=False)
        self._register_load_state_dict_pre_hook(self._fuse_qkv)

    def _fuse_qkv(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for kind in ("weight", "bias"):
            names = [f"{prefix}{w}.{kind}" for w in ("wq", "wk", "wv")]
            if names[0] in state_dict:
                state_dict[f"{prefix}wqkv.{kind}"] = torch.cat([state_dict.pop(n) for n in names])

    def forward(self, x: torch.Tensor, plan: AttnPlan) -> torch.Tensor:
        B, T, _ = x.shape
        qk, v = self.wqkv(x).split([self.q_size + self.kv_size, self.kv_size], dim=-1)
        # q and k heads side by side are rotated in one pass: [B, T, Hq + Hkv, hd]
        qk = apply_rope(qk.view(B, T, self.n_heads + self.n_kv_heads, self.head_dim), plan.cos, plan.sin)
        q = qk[:, :, :self.n_heads].transpose(1, 2)  # [B, Hq, T, hd]
        k = qk[:, :, self.n_heads:].transpose(1, 2)  # [B, Hkv, T, hd]
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
        if plan.cache is not None:
            k, v = plan.cache.update(self.layer, plan, k, v)  # [B, Hkv, S, hd], S = attended cache positions
        y = self._sdpa(q, k, v, plan)  # [B, Hq, T, hd]
        return self.wo(y.transpose(1, 2).reshape(B, T, self.q_size))

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: AttnPlan) -> torch.Tensor:
        B, _, T, hd = q.shape
        if plan.spans is not None:  # a decode step against the cache: each row its own key span, no mask
            return decode_attention(q[:, :, 0], k, v, plan.spans).unsqueeze(2)  # [B, Hq, 1, hd]
        if T == 1 and self.n_rep > 1:
            # Fold the group's query heads into the query axis: no K/V repeat, no mask beyond the row's own.
            qf = q.reshape(B, self.n_kv_heads, self.n_rep, hd)  # [B, Hkv, n_rep, hd]
            y = F.scaled_dot_product_attention(qf, k, v, attn_mask=plan.mask)  # [B, Hkv, n_rep, hd]
            return y.reshape(B, self.n_heads, 1, hd)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=plan.mask, is_causal=plan.causal,
                                              enable_gqa=self.n_rep > 1)
