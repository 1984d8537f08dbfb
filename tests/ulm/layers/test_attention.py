"""ulm.layers.attention and mlp: fused q/k/v and gate/up accept the canonical separate weights; every
attention path (SDPA causal, folded one-token GQA, masked cache) equals explicit softmax attention
with K/V heads repeated.

Run: .venv/bin/python -m pytest tests/ulm/layers/test_attention.py -q
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ulm.config import ModelConfig
from ulm.layers.attention import Attention, AttnPlan
from ulm.layers.mlp import GeluMLP, SwiGLU
from ulm.layers.rope import RotaryEmbedding, apply_rope


def reference(x: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor, wo: torch.Tensor,
              config: ModelConfig, rope: RotaryEmbedding) -> torch.Tensor:
    """Textbook causal attention: separate projections, repeated K/V heads, explicit softmax."""
    B, T, _ = x.shape
    hd = config.head_dim
    q = (x @ wq.T).view(B, T, config.n_heads, hd).transpose(1, 2)  # [B, Hq, T, hd]
    k = (x @ wk.T).view(B, T, config.n_kv_heads, hd).transpose(1, 2)  # [B, Hkv, T, hd]
    v = (x @ wv.T).view(B, T, config.n_kv_heads, hd).transpose(1, 2)
    q, k = apply_rope(q, rope.cos[:T], rope.sin[:T]), apply_rope(k, rope.cos[:T], rope.sin[:T])
    k, v = k.repeat_interleave(config.n_rep, dim=1), v.repeat_interleave(config.n_rep, dim=1)  # [B, Hq, T, hd]
    scores = q @ k.transpose(-1, -2) / hd**0.5  # [B, Hq, T, T]
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = scores.softmax(-1) @ v  # [B, Hq, T, hd]
    return y.transpose(1, 2).reshape(B, T, -1) @ wo.T


@pytest.mark.parametrize("n_kv_heads", [6, 3, 1], ids=["mha", "gqa", "mqa"])
def test_attention_paths_equal_the_textbook_computation(n_kv_heads: int) -> None:
    from ulm.kv_cache import KVCache

    config = ModelConfig(vocab_size=8, dim=48, n_layers=1, n_heads=6, n_kv_heads=n_kv_heads, hidden_dim=64,
                         max_seq_len=32)
    torch.manual_seed(0)
    hd, kv = 8, n_kv_heads * 8
    wq, wk, wv, wo = torch.randn(48, 48) / 7, torch.randn(kv, 48) / 7, torch.randn(kv, 48) / 7, torch.randn(48, 48) / 7
    attn = Attention(config, layer=0)
    attn.load_state_dict({"wq.weight": wq, "wk.weight": wk, "wv.weight": wv, "wo.weight": wo})  # separate names
    assert attn.wqkv.weight.shape == (48 + 2 * kv, 48)
    rope = RotaryEmbedding(hd, 32, 10000.0)
    x = torch.randn(2, 10, 48)
    ref = reference(x, wq, wk, wv, wo, config, rope)
    with torch.no_grad():
        full = AttnPlan(rope.cos[:10, None], rope.sin[:10, None], causal=True)  # cos/sin [T, 1, hd]
        torch.testing.assert_close(attn(x, full), ref, atol=1e-5, rtol=0)
        cache = KVCache(config, 2, 16)
        steps = []
        for t in range(10):  # one token at a time: the folded path, keys a view of the cache
            plan = AttnPlan(rope.cos[t:t + 1, None], rope.sin[t:t + 1, None], cache=cache, rows=slice(0, 2),
                            pos=slice(t, t + 1), keys=slice(0, t + 1))
            steps.append(attn(x[:, t:t + 1], plan))
        torch.testing.assert_close(torch.cat(steps, dim=1), ref, atol=1e-5, rtol=0)


def test_qkv_bias_is_fused_with_the_weights() -> None:
    config = ModelConfig(vocab_size=8, dim=16, n_layers=1, n_heads=4, n_kv_heads=2, hidden_dim=32, qkv_bias=True)
    attn = Attention(config, layer=0)
    bq, bk, bv = torch.randn(16), torch.randn(8), torch.randn(8)
    attn.load_state_dict({"wq.weight": torch.zeros(16, 16), "wk.weight": torch.zeros(8, 16),
                          "wv.weight": torch.zeros(8, 16), "wo.weight": torch.eye(16),
                          "wq.bias": bq, "wk.bias": bk, "wv.bias": bv})
    torch.testing.assert_close(attn.wqkv.bias, torch.cat([bq, bk, bv]))


def test_swiglu_fuses_gate_and_up() -> None:
    mlp = SwiGLU(16, 24)
    gate, up, down = torch.randn(24, 16), torch.randn(24, 16), torch.randn(16, 24)
    mlp.load_state_dict({"w_gate.weight": gate, "w_up.weight": up, "w_down.weight": down})
    x = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), (F.silu(x @ gate.T) * (x @ up.T)) @ down.T, atol=1e-5, rtol=1e-5)


def test_gelu_mlp() -> None:
    mlp = GeluMLP(8, 12)
    x = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), F.gelu(x @ mlp.w_up.weight.T, approximate="tanh") @ mlp.w_down.weight.T)
