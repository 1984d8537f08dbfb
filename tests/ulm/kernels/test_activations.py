"""SwiGLU's activation (ulm/kernels/activations.py): the native silu · up against torch's ops.

Run: .venv/bin/python -m pytest tests/ulm/kernels -q
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ulm.kernels import activations, native
from ulm.kernels.activations import silu_mul


def test_native_silu_mul_rounds_as_torch_bf16_ops_do_up_to_silus_last_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    if native.library() is None:
        pytest.fail("the native kernels did not build on this machine (a C compiler is part of the set-up)")
    g = torch.Generator().manual_seed(0)
    gate_up = (torch.randn(3, 70, 2 * 96, generator=g) * 4).bfloat16()  # 70 rows: below the threading cut
    gate_up[0, 0, :5] = torch.tensor([0.0, -0.0, 100.0, -100.0, -95.0])  # zeros, saturated, near fp32's floor
    big = (torch.randn(600, 2 * 256, generator=g) * 3).bfloat16()  # above it: OpenMP threads
    for x in (gate_up, big):
        got = silu_mul(x)
        gate, up = x.chunk(2, dim=-1)
        want = F.silu(gate) * up
        assert got.dtype == torch.bfloat16 and got.shape == want.shape
        torch.testing.assert_close(got.float(), want.float(), atol=1e-30, rtol=2 ** -7)  # one bf16 ulp (or subnormal)
        assert (got == want).float().mean().item() > 0.97  # and equal bits almost everywhere
    assert silu_mul(gate_up)[0, 0, 2].item() == (100.0 * gate_up[0, 0, 98]).item()  # silu(100) = 100 exactly
    monkeypatch.setattr(activations, "library", lambda: None)
    fallback = silu_mul(gate_up.float())
    torch.testing.assert_close(fallback, F.silu(gate_up.float()[..., :96]) * gate_up.float()[..., 96:])
