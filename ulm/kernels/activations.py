"""SwiGLU's activation on the fused gate/up projection: `silu_mul(gate_up)` = silu(gate) · up.

Native (`ulm_kernels.c`) for contiguous bf16 CPU tensors, one pass instead of torch's split, silu and
multiply (each a full pass over the prefill's [T, 2F] activations); torch ops otherwise (fp32, the exact
mode, keeps torch's own). The MLP module and the fast model's decode loop both call it, so their results
stay equal bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ulm.kernels.native import library


def silu_mul(gate_up: Tensor) -> Tensor:
    """gate_up [..., 2F] (rows [gate | up]) → silu(gate) · up [..., F]."""
    hidden = gate_up.shape[-1] // 2
    lib = library() if gate_up.dtype == torch.bfloat16 and gate_up.device.type == "cpu" else None
    if lib is None or not gate_up.is_contiguous():
        gate, up = gate_up.split(hidden, dim=-1)
        return F.silu(gate) * up
    out = torch.empty(*gate_up.shape[:-1], hidden, dtype=torch.bfloat16)
    lib.ulm_silu_mul_bf16(gate_up.data_ptr(), gate_up.numel() // gate_up.shape[-1], hidden, out.data_ptr())
    return out
