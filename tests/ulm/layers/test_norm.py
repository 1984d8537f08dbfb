"""ulm.layers.norm: RMSNorm equals HF's LlamaRMSNorm (fp32 and bf16 rounding), LayerNorm equals torch's.

Run: .venv/bin/python -m pytest tests/ulm/layers/test_norm.py -q
"""

from __future__ import annotations

import pytest
import torch

from ulm.config import ModelConfig
from ulm.kernels import native
from ulm.layers import norm
from ulm.layers.norm import LayerNorm, RMSNorm, build_norm, rms_norm


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


@pytest.mark.parametrize("rows", [1, 300], ids=["decode-row", "prefill-rows"])
def test_native_rms_norm_agrees_with_the_torch_ops_and_rounds_into_bf16(rows: int,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if native.library() is None:
        pytest.fail("the native kernels did not build on this machine (a C compiler is part of the set-up)")
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(rows, 576, generator=g) * 4, torch.randn(576, generator=g)
    got = rms_norm(x, w, 1e-5)
    got_bf16 = rms_norm(x, w, 1e-5, out=torch.empty(rows, 576, dtype=torch.bfloat16))
    assert torch.equal(got_bf16, got.bfloat16())  # the same norm, rounded to nearest even
    monkeypatch.setattr(norm, "library", lambda: None)
    torch.testing.assert_close(got, rms_norm(x, w, 1e-5), atol=1e-5, rtol=2e-6)


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
