"""ulm.layers.norm: RMSNorm equals HF's LlamaRMSNorm (fp32 and bf16 rounding), LayerNorm equals torch's.

Run: .venv/bin/python -m pytest tests/ulm/layers/test_norm.py -q
"""

from __future__ import annotations

import pytest
import torch

from ulm.config import ModelConfig
from ulm.layers.norm import LayerNorm, RMSNorm, build_norm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_matches_transformers(dtype: torch.dtype) -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    ours, theirs = RMSNorm(48, eps=1e-5), LlamaRMSNorm(48, eps=1e-5)
    with torch.no_grad():
        w = torch.randn(48)
        ours.weight.copy_(w)
        theirs.weight.copy_(w)
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    x = (torch.randn(2, 7, 48) * 3).to(dtype)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6 if dtype == torch.float32 else 0, rtol=1e-5)


def test_layernorm_matches_torch() -> None:
    ours, ref = LayerNorm(16, eps=1e-6), torch.nn.LayerNorm(16, eps=1e-6)
    with torch.no_grad():
        for p in (*ours.parameters(), *ref.parameters()):
            p.copy_(torch.linspace(-1, 1, 16))
    x = torch.randn(3, 16)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.bfloat16()(x.bfloat16()).float(), ref(x), atol=0.05, rtol=0.05)


def test_config_picks_the_norm() -> None:
    base = ModelConfig(vocab_size=8, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    assert isinstance(build_norm(base), RMSNorm)
    assert isinstance(build_norm(base.with_(norm="layernorm")), LayerNorm)
