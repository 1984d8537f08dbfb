"""The fast model's whole decode step through its blocks in one foreign call (`ulm_decode.c`).

`DecodeBlocks.make(layers, blocks, eps)` binds, once per KV cache, each block's norm weights, linears and the
cache's per-layer attention structs (`DecodeLayers`); `run(x, meta)` then takes the fp32 residual stream
[B, D] through every block in place. It runs the same kernels in the same order as `FastTransformer`'s
Python loop over them (bit-identical, tested) without ~10 Python-level calls per layer. A linear is either
an int4 one in the native "vnni" layout (no bias, bf16 out) or a GGUF block-quant one (`ulm.kquant`, tile
layout, bf16 out, its bias added in the kernel: Qwen2's q/k/v bias); a block-quant q/k/v or gate/up
projection takes its norm's output in fp32. `make` returns None where it cannot run: no native kernels, a
CPU without AVX-512 VNNI (the linears then keep torch's layout, or the block-quant rows), or blocks that
are not RMSNorm + such q/k/v, o, gate/up, down linears.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ulm.kernels.attention import DecodeLayers
from ulm.kernels.native import library
from ulm.kquant.linear import KQuantLinear
from ulm.quant import Int4Linear

# one block's attn_norm weight, wqkv, wo, mlp_norm weight, w_gate_up, w_down
Block = tuple[Tensor, nn.Module, nn.Module, Tensor, nn.Module, nn.Module]


class _Linear(ctypes.Structure):
    """ulm_linear of ulm_decode.c."""

    _fields_ = [("packed", ctypes.c_void_p), ("sz", ctypes.c_void_p), ("kq", ctypes.c_void_p)]


class _Block(ctypes.Structure):
    """ulm_block of ulm_decode.c."""

    _fields_ = [("attn", ctypes.c_void_p), ("attn_norm", ctypes.c_void_p), ("mlp_norm", ctypes.c_void_p),
                *((name, _Linear) for name in ("qkv", "o", "gu", "down"))]


def _int4(lin: object) -> bool:
    return (isinstance(lin, Int4Linear) and lin.layout == "vnni" and lin.bias is None
            and lin.out_dtype == lin.dtype == torch.bfloat16)


def _block_quant(lin: object) -> bool:
    return isinstance(lin, KQuantLinear) and lin.layout == "tiles" and lin.out_dtype == torch.bfloat16


def native_linear(lin: object) -> bool:
    """Whether the fused step runs this linear (int4 in the vnni layout, or block quants in tiles; bf16 out)."""
    if _block_quant(lin):
        lib = library()
        return lib is not None and bool(lib.ulm_kq_vnni())
    return _int4(lin)


def _bind(slot: _Linear, lin: nn.Module) -> None:
    if isinstance(lin, KQuantLinear):
        slot.kq = lin.descriptor
    else:
        assert isinstance(lin, Int4Linear)
        slot.packed, slot.sz = lin.packed.data_ptr(), lin.scales_zeros.data_ptr()


def _fp32_vector(t: object) -> bool:
    return isinstance(t, Tensor) and t.dtype == torch.float32 and t.dim() == 1 and t.is_contiguous()


class DecodeBlocks:
    """Every block's decode step over one cache, one foreign call a step."""

    def __init__(self, lib: ctypes.CDLL, layers: DecodeLayers, blocks: Sequence[Block], eps: float) -> None:
        self._keep = (layers, tuple(blocks))  # the structs point into these
        self._structs = (_Block * len(blocks))()
        for s, attn, (n1, qkv, o, n2, gu, down) in zip(self._structs, layers.addresses, blocks, strict=True):
            s.attn, s.attn_norm, s.mlp_norm = attn, n1.data_ptr(), n2.data_ptr()
            for slot, lin in ((s.qkv, qkv), (s.o, o), (s.gu, gu), (s.down, down)):
                _bind(slot, lin)
        o, down = blocks[0][2], blocks[0][5]
        self._n, self._dim, self._hidden = len(blocks), o.out_features, down.in_features
        self._eps = eps
        self._fn = lib.ulm_decode_blocks_bf16

    @classmethod
    def make(cls, layers: DecodeLayers, blocks: Sequence[Block], eps: float) -> DecodeBlocks | None:
        lib = library()
        if lib is None or not lib.ulm_int4_vnni() or not blocks:
            return None
        if not all(_fp32_vector(n1) and _fp32_vector(n2) and all(map(native_linear, (qkv, o, gu, down)))
                   for n1, qkv, o, n2, gu, down in blocks):
            return None
        return cls(lib, layers, blocks, eps)

    def run(self, x: Tensor, meta: Tensor, decoded: int | None = None) -> None:
        """x [B, D] fp32 contiguous (the residual stream, updated in place); meta [B, 3] as for DecodeLayers;
        the first `decoded` rows (None: all) are tokens being decoded, the others a prompt's (a precise
        block-quant linear quantises the former's activations to int16, the latter's to int8)."""
        B = x.shape[0]
        if x.dtype != torch.float32 or not x.is_contiguous() or x.shape[1] != self._dim:
            raise ValueError(f"the residual stream must be a contiguous fp32 [B, {self._dim}] tensor")
        P = B if decoded is None else decoded
        if not 0 <= P <= B:
            raise ValueError(f"{decoded} decoded rows of {B}")
        rc = self._fn(ctypes.addressof(self._structs), self._n, self._dim, self._hidden, self._eps,
                      meta.data_ptr(), B, P, x.data_ptr())
        if rc == -2:
            raise MemoryError("no memory for the decode step's buffers")
        if rc == -3:
            raise ValueError("decode step: the block-quant kernels refused a linear")
        if rc != 0:
            raise ValueError(f"decode step: a row has no key to attend to (meta {meta.tolist()})")
