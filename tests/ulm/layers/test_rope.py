"""ulm.layers.rope: inverse frequencies and attention factors of every scaling equal transformers' formulas;
tables and rotation equal HF's rotate-half application; NTK-aware scaling follows its closed form.

Run: .venv/bin/python -m pytest tests/ulm/layers/test_rope.py -q
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from ulm.config import RopeScaling
from ulm.layers.rope import RotaryEmbedding, apply_rope, inv_freq_and_scale

HEAD_DIM, THETA = 64, 10000.0


def hf_inv_freq(rope_type: str, params: dict[str, Any], max_pos: int = 512) -> tuple[torch.Tensor, float]:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = LlamaConfig(hidden_size=HEAD_DIM * 4, num_attention_heads=4, max_position_embeddings=max_pos,
                         rope_parameters={"rope_type": rope_type, "rope_theta": THETA, **params})
    return ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")


@pytest.mark.parametrize(("rope_type", "params", "scaling"), [
    ("linear", {"factor": 4.0}, RopeScaling("linear", 4.0)),
    ("yarn", {"factor": 4.0, "original_max_position_embeddings": 128}, RopeScaling("yarn", 4.0, 128)),
    ("yarn", {"factor": 8.0, "original_max_position_embeddings": 256, "beta_fast": 16, "beta_slow": 2,
              "truncate": False}, RopeScaling("yarn", 8.0, 256, beta_fast=16, beta_slow=2, truncate=False)),
    ("yarn", {"factor": 4.0, "original_max_position_embeddings": 128, "attention_factor": 1.5},
     RopeScaling("yarn", 4.0, 128, attn_factor=1.5)),
    ("llama3", {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 256}, RopeScaling("llama3", 8.0, 256)),
    ("llama3", {"factor": 4.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0,
                "original_max_position_embeddings": 512},
     RopeScaling("llama3", 4.0, 512, low_freq_factor=2.0, high_freq_factor=8.0)),
], ids=["linear", "yarn", "yarn-betas-untruncated", "yarn-attn-factor", "llama3", "llama3-bands"])
def test_scalings_match_transformers(rope_type: str, params: dict[str, Any], scaling: RopeScaling) -> None:
    theirs, their_scale = hf_inv_freq(rope_type, params)
    ours, our_scale = inv_freq_and_scale(HEAD_DIM, THETA, scaling)
    torch.testing.assert_close(ours, theirs.float(), atol=0, rtol=1e-6)
    assert our_scale == pytest.approx(their_scale)


def test_unscaled_frequencies_and_yarn_default_attention_factor() -> None:
    inv, scale = inv_freq_and_scale(HEAD_DIM, THETA, RopeScaling())
    torch.testing.assert_close(inv, THETA ** (-torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
    assert scale == 1.0
    assert inv_freq_and_scale(HEAD_DIM, THETA, RopeScaling("yarn", 4.0, 128))[1] == pytest.approx(
        0.1 * math.log(4.0) + 1)


def test_ntk_scales_the_base_by_factor_to_the_d_over_d_minus_2() -> None:
    inv, scale = inv_freq_and_scale(HEAD_DIM, THETA, RopeScaling("ntk", 4.0))
    base = THETA * 4.0 ** (HEAD_DIM / (HEAD_DIM - 2))
    torch.testing.assert_close(inv, base ** (-torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
    assert scale == 1.0
    assert inv[0] == 1.0 and inv[-1] < inv_freq_and_scale(HEAD_DIM, THETA, RopeScaling())[0][-1]


def test_tables_and_rotation_match_transformers() -> None:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    scaling = RopeScaling("yarn", 4.0, 64)
    rope = RotaryEmbedding(HEAD_DIM, 200, THETA, scaling)
    inv, scale = hf_inv_freq("yarn", {"factor": 4.0, "original_max_position_embeddings": 64})
    pos = torch.arange(200).float()
    emb = torch.cat([torch.outer(pos, inv)] * 2, dim=-1)
    torch.testing.assert_close(rope.cos, emb.cos() * scale)
    torch.testing.assert_close(rope.sin, emb.sin() * scale)
    q, k = torch.randn(2, 3, 200, HEAD_DIM), torch.randn(2, 1, 200, HEAD_DIM)
    hq, hk = apply_rotary_pos_emb(q, k, rope.cos[None], rope.sin[None])
    torch.testing.assert_close(apply_rope(q, rope.cos, rope.sin), hq, atol=0, rtol=0)
    torch.testing.assert_close(apply_rope(k, rope.cos, rope.sin), hk, atol=0, rtol=0)


def test_rotation_preserves_norms_and_relative_positions() -> None:
    rope = RotaryEmbedding(HEAD_DIM, 64, THETA)
    q, k = torch.randn(HEAD_DIM), torch.randn(HEAD_DIM)
    rq = apply_rope(q.expand(64, HEAD_DIM), rope.cos, rope.sin)  # q at every position
    rk = apply_rope(k.expand(64, HEAD_DIM), rope.cos, rope.sin)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(64))
    scores = rq @ rk.T  # depends only on the offset between positions
    torch.testing.assert_close(scores[10, 7], scores[40, 37], atol=1e-4, rtol=0)


def test_tables_can_be_rebuilt_in_another_dtype() -> None:
    rope = RotaryEmbedding(HEAD_DIM, 32, THETA)
    rope.rebuild(torch.bfloat16, "cpu")
    assert rope.cos.dtype == torch.bfloat16 and rope.cos.shape == (32, HEAD_DIM)
