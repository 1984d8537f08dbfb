"""Weight-only int8 and int4 linears for µLM's CPU fast mode, and the module swap that installs them.

- `Int4Linear` holds 4-bit weights in groups of 32 along K, one scale and one zero per group, dequantised as
  w = (q − 8)·scale + zero, and runs torch's CPU int4 kernel (`_weight_int4pack_mm_for_cpu`). Activations,
  scales and zeros are bf16 in the fast mode; with fp32 they give an exact reference (~1e-6, ~28× slower).
  `use_native_kernel()` moves a bf16 one to `ulm.kernels`' int4 kernel where the machine has it (AVX-512 VNNI, or AVX2)
  (its weights repacked and its scales and zeros reordered block by block, in place, same size): int8
  activations per group of 32, reading each weight once for up to 4 rows. Measured on the embedded model
  against torch's kernel: 1.3× (the blocks' linears) to 5× (the LM head) for one row, 1.6× for 4 rows (the
  server's batched decode), 2-2.4× for 16-64, before the scales' reordering took another ~15% off.
  For many rows at once (a long prefill) it unpacks the weight to bf16 and runs a dense GEMM instead.
- `Int8Linear` runs `_weight_int8pack_mm`: int8 weights with one scale per output row. It takes any shape,
  so it is also the fallback where the int4 kernel's constraints (N % 16, K % 32) do not hold.
- GGUF Q4_1 and Q4_0 blocks map losslessly onto the int4 format: Q4_1 (w = d·q + m) is scale d and zero
  m + 8d; Q4_0 (w = d·(q − 8)) is scale d and zero 0. A `BlockTensor` (the GGUF loader's `GGUFTensor`)
  carries a tensor's blocks as stored. Every other source (fp32 weights, Q8_0, K-quants dequantised by
  the loader) is quantised group-wise with min/max (int4) or per-row absmax (int8); min/max over a
  dequantised Q4_1 weight lands on the same grid, so it is lossless there too.
- `KQuantLinear` (`ulm.kquant`) keeps GGUF block quants (Q4_K, Q5_K, Q6_K, Q8_0, Q5_0) as stored, repacked
  losslessly for its native kernels: the "kquant" scheme, which the fast mode picks for a GGUF whose every
  linear is in those types (the coder models: `ulm.fast.blocks`).
- Which linear a weight becomes is a table: `LINEAR_KINDS` (a kind's module and how it is made: from a
  float weight, from GGUF blocks as stored, from its saved tensors) and `FROM_BLOCKS` (per scheme, the GGUF
  block types a kind takes losslessly); `quantized_linear` picks by them, `linear_from_state` rebuilds a
  saved one, `block_kind` names the kind a linear's blocks take.
- `quantize_model(model, scheme, raw)` swaps every `nn.Linear` (and the tied LM head) in place.
  `ulm.fast.convert` builds the fast mode's linears with `quantized_linear`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ulm.kernels.native import library
from ulm.kquant.formats import FORMATS as BLOCK_FORMATS
from ulm.kquant.linear import KQuantLinear

GROUP = 32  # weights per int4 group; equals the GGUF block size of Q4_0/Q4_1/Q8_0
_BLOCK_BYTES = {"Q4_1": 20, "Q4_0": 18, "Q8_0": 34}
FOUR_BIT = ("Q4_1", "Q4_0")  # block types that map onto the int4 format without loss
PACK_BLOCK = 64  # output rows per block of torch's CPU int4 packing with AVX-512 (see `torch_pack_block`)
# Inputs with at least this many rows (prefill) dequantise the weight to bf16 and run a dense GEMM: measured
# 1.2× faster than the int4 kernel at 128 rows, 1.8× at 512 (the int4 kernel is made for few rows).
DENSE_MIN_ROWS = 128
# Where the CPU has no bf16 GEMM (AVX2), the native kernel runs every size: 64 rows of a 1536 → 8960 linear in
# 14 ms (125 GFLOP/s) where the fp32 GEMM reaches 97 GFLOP/s, before unpacking (2-core AVX2 EPYC).
# With the native VNNI kernel the dense GEMM only draws level at 256-512 rows (measured, whole model): above
# this the dense path runs, for its bf16 activations.
NATIVE_DENSE_MIN_ROWS = 256


class BlockTensor(Protocol):
    """One GGUF tensor's quantised blocks as stored (`ulm.loading.gguf.GGUFTensor` is one), rows in HF order.

    ggml_type: the GGUF type name ("Q4_1", "Q4_0", "Q8_0", ...); shape: (N, K) of the weight it encodes;
    blocks: uint8 [N, K / 32 · block bytes].
    """

    ggml_type: str
    shape: tuple[int, ...]
    blocks: np.ndarray


def _checked_blocks(raw: BlockTensor) -> tuple[int, int, np.ndarray]:
    """(N, K, blocks [N, K / 32, block bytes]) of a supported block tensor; ValueError otherwise."""
    if raw.ggml_type not in _BLOCK_BYTES or len(raw.shape) != 2:
        raise ValueError(f"unsupported block tensor {raw.ggml_type} {tuple(raw.shape)}; "
                         f"expected a 2-D one of {sorted(_BLOCK_BYTES)}")
    n, k = raw.shape
    size = _BLOCK_BYTES[raw.ggml_type]
    if k % GROUP or raw.blocks.shape != (n, k // GROUP * size):
        raise ValueError(f"{raw.ggml_type} blocks of shape {raw.blocks.shape} do not encode a weight of shape {n}×{k}")
    return n, k, raw.blocks.reshape(n, k // GROUP, size)


@dataclass
class Int4Weight:
    """A 4-bit weight in the kernel's convention: w = (q − 8)·scale + zero per group of 32 along K.

    q: int32 [N, K] in 0..15; scale, zero: float32 [N, K / 32].
    """

    q: Tensor
    scale: Tensor
    zero: Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return (self.q.shape[0], self.q.shape[1])

    def dequantize(self) -> Tensor:
        """The float32 weight [N, K] this encodes."""
        n, k = self.shape
        q = self.q.view(n, k // GROUP, GROUP).float()  # (N, G, 32)
        return ((q - 8) * self.scale[..., None] + self.zero[..., None]).view(n, k)

    @staticmethod
    def cat(parts: list[Int4Weight]) -> Int4Weight:
        """Stack weights along N (output rows), e.g. q/k/v into one fused projection."""
        return Int4Weight(torch.cat([p.q for p in parts]), torch.cat([p.scale for p in parts]),
                          torch.cat([p.zero for p in parts]))


def _f16(data: np.ndarray, offset: int) -> np.ndarray:
    """Read a little-endian float16 field of each block as float32. data: uint8 [N, G, block bytes]."""
    return np.ascontiguousarray(data[..., offset:offset + 2]).view("<f2")[..., 0].astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """GGUF 4-bit quants [N, G, 16] → values [N, G, 32]: low nibbles are weights 0..15, high ones 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def int4_from_raw(raw: BlockTensor) -> Int4Weight:
    """Q4_1 or Q4_0 blocks → the kernel's int4 format, losslessly (scales and zeros in float32)."""
    n, k, blocks = _checked_blocks(raw)  # blocks: (N, G, bytes)
    d = _f16(blocks, 0)  # (N, G)
    if raw.ggml_type == "Q4_1":
        m = _f16(blocks, 2)
        q, zero = _nibbles(blocks[..., 4:]), m + 8 * d
    elif raw.ggml_type == "Q4_0":
        q, zero = _nibbles(blocks[..., 2:]), np.zeros_like(d)
    else:
        raise ValueError(f"{raw.ggml_type} blocks are not 4-bit; quantise their dequantised weight instead")
    q_t = torch.from_numpy(q.reshape(n, k).astype(np.int32))
    return Int4Weight(q_t, torch.from_numpy(d), torch.from_numpy(zero))


def dequantize_raw(raw: BlockTensor) -> Tensor:
    """Any supported block type → its float32 weight [N, K]."""
    if raw.ggml_type in FOUR_BIT:
        return int4_from_raw(raw).dequantize()
    n, k, blocks = _checked_blocks(raw)  # (N, G, 34)
    q = np.ascontiguousarray(blocks[..., 2:]).view(np.int8).astype(np.float32)  # (N, G, 32)
    return torch.from_numpy((q * _f16(blocks, 0)[..., None]).reshape(n, k))


def int4_from_float(w: Tensor) -> Int4Weight:
    """Quantise a float weight [N, K] to 4 bits per group of 32 with min/max (asymmetric) scaling."""
    n, k = w.shape
    g = w.detach().float().reshape(n, k // GROUP, GROUP)  # (N, G, 32)
    lo, hi = torch.aminmax(g, dim=-1)  # (N, G) each
    scale = (hi - lo).div_(15).clamp_min_(1e-12)
    q = (g - lo[..., None]).div_(scale[..., None]).round_().clamp_(0, 15).to(torch.int32).view(n, k)
    return Int4Weight(q, scale, lo + 8 * scale)


def _unpack_torch_layout(packed: Tensor, n: int, k: int, block: int) -> Tensor:
    """Values uint8 [N, K] of torch's CPU int4 packing with `block` output rows per block: each block is
    [K, block / 2] bytes, byte (k, i) holding row i's value in its low nibble and row i + block / 2's in its
    high nibble."""
    p = packed.view(n // block, k, block // 2).transpose(1, 2)  # (nb, block / 2, K)
    return torch.stack((p & 0x0F, p >> 4), dim=1).reshape(n, k)  # rows i, then i + block / 2, per block


@functools.cache
def torch_pack_block() -> int | None:
    """Output rows per block of `torch._convert_weight_to_int4pack_for_cpu` on this CPU (torch picks it by
    instruction set: 64 with AVX-512, 32 with AVX2), found by packing a known weight; None when no block
    layout reproduces it (then the dense path, which unpacks that layout, is off)."""
    n, k = 64, 64
    q = torch.randint(0, 16, (n, k), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
    for block in (64, 32, 16):
        if packed.shape == (n, k // 2) and torch.equal(_unpack_torch_layout(packed, n, k, block).int(), q):
            return block
    return None


@functools.cache
def bf16_gemm_native() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX). Without it torch's bf16 GEMM
    is emulated: 18 GFLOPS against fp32's 97 on a 2-core AVX2 EPYC (512×1536 by 1536×8960), so the dense
    path then unpacks to fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def int4_supported(n: int, k: int) -> bool:
    """Whether torch's CPU int4 kernel takes an N×K weight."""
    return n % 16 == 0 and k % GROUP == 0


class Int4Linear(nn.Module):
    """y = x @ Wᵀ (+ b) with W in 4 bits. x: [..., K] (cast to `dtype` when it is not) → [..., N] in `out_dtype`.

    packed: uint8 [N, K / 2] in the layout of the kernel that runs it (`layout`: "torch", or "vnni" after
    `use_native_kernel`); scales_zeros: `dtype` (scale, zero) pairs, [K / 32, N, 2] in torch's layout and
    [N / 32, K / 32, 32, 2] (block by block) in the vnni one. Build one from an `Int4Weight` with
    `Int4Linear.quantize`.
    """

    def __init__(self, packed: Tensor, scales_zeros: Tensor, bias: Tensor | None = None,
                 dtype: torch.dtype = torch.bfloat16, out_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = packed.shape[0], packed.shape[1] * 2
        self.dtype, self.out_dtype = dtype, out_dtype or dtype
        self.layout = "torch"
        self.register_buffer("packed", packed)
        self.register_buffer("scales_zeros", scales_zeros.to(dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype).contiguous())

    def use_native_kernel(self) -> bool:
        """Repack the weight, in place, for the native int4 kernel when this machine has it (AVX-512 VNNI, or
        AVX2 and FMA; bf16, CPU, N % 64 == 0); True when it runs that kernel from now on. Its state dict (and
        any tensor sharing `packed`'s memory) then holds the "vnni" layout."""
        if self.layout == "vnni":
            return True
        lib = library() if self.dtype == torch.bfloat16 and self.packed.device.type == "cpu" else None
        block = torch_pack_block()
        if lib is None or not lib.ulm_int4_vnni() or self.out_features % PACK_BLOCK or block not in (32, 64):
            return False
        if not self.packed.is_contiguous():
            self.packed = self.packed.contiguous()
        # in place: no second copy of the weights, even for a moment (peak RSS)
        if lib.ulm_int4_repack_vnni(self.packed.data_ptr(), self.out_features, self.in_features, block) != 0:
            return False
        # scales and zeros block by block, in the order the kernel streams them: [N / 32, K / 32, 32, 2]
        sz = self.scales_zeros.contiguous()
        blocked = sz.view(self.in_features // GROUP, self.out_features // 32, 32, 2).transpose(0, 1).contiguous()
        sz.view(-1).copy_(blocked.view(-1))
        self.scales_zeros = sz.view(blocked.shape)
        self.layout = "vnni"
        return True

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor], dtype: torch.dtype = torch.bfloat16,
                   out_dtype: torch.dtype | None = None) -> Int4Linear:
        """Rebuilt from its state dict (torch's layout: saved before `use_native_kernel`)."""
        return cls(state["packed"], state["scales_zeros"], state.get("bias"), dtype, out_dtype)

    @classmethod
    def quantize(cls, weight: Int4Weight, bias: Tensor | None = None, dtype: torch.dtype = torch.bfloat16,
                 out_dtype: torch.dtype | None = None) -> Int4Linear:
        """Pack an `Int4Weight` for the kernel."""
        n, k = weight.shape
        if not int4_supported(n, k):
            raise ValueError(f"the CPU int4 kernel needs N % 16 == 0 and K % {GROUP} == 0, not {n}×{k}")
        packed = torch._convert_weight_to_int4pack_for_cpu(weight.q.contiguous(), 1)  # (N, K / 2)
        sz = torch.stack([weight.scale.t(), weight.zero.t()], dim=-1).to(dtype).contiguous()  # (K / 32, N, 2)
        return cls(packed, sz, bias, dtype, out_dtype)

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, self.in_features).to(self.dtype)  # (M, K)
        dense_rows = DENSE_MIN_ROWS
        if self.layout == "vnni":  # without a bf16 GEMM the kernel's integer dot products win at every size
            dense_rows = NATIVE_DENSE_MIN_ROWS if bf16_gemm_native() else x2.shape[0] + 1
        if x2.shape[0] >= dense_rows and self.dense_ok():  # many rows (prefill): dequantise once, a dense GEMM
            width = self.dtype if bf16_gemm_native() or self.dtype != torch.bfloat16 else torch.float32
            y = F.linear(x2.to(width), self.dense(width)).to(self.dtype)
        else:
            y = self.matmul(x2, torch.float32 if self.out_dtype == torch.float32 else self.dtype)  # (M, N)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(self.out_dtype)

    def matmul(self, x: Tensor, out_dtype: torch.dtype | None = None) -> Tensor:
        """x [M, K] in `dtype` → x @ Wᵀ [M, N] on the int4 kernel, no bias. The native kernel writes fp32 when
        asked (`out_dtype`); torch's always gives `dtype`."""
        if self.layout != "vnni":
            return torch._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scales_zeros)
        lib = library()
        assert lib is not None  # the layout is only ever "vnni" where the library is loaded
        x = x.contiguous()
        f32 = out_dtype == torch.float32
        y = torch.empty(x.shape[0], self.out_features, dtype=torch.float32 if f32 else torch.bfloat16)
        if lib.ulm_int4_vnni_mm(x.data_ptr(), x.shape[0], self.in_features, self.packed.data_ptr(),
                                self.scales_zeros.data_ptr(), self.out_features, y.data_ptr(), int(f32)) != 0:
            raise MemoryError("no memory for the int4 kernel's activations")
        return y

    def dense_ok(self) -> bool:
        """Whether `dense` can unpack this weight: the vnni layout, or torch's with a known block size that
        divides N."""
        block = torch_pack_block()
        return self.layout == "vnni" or (block is not None and self.out_features % block == 0)

    def dense(self, dtype: torch.dtype | None = None) -> Tensor:
        """The weight [N, K] in `dtype` (default: the linear's), unpacked from the kernel's layout (`dense_ok()`
        must hold).

        Torch's CPU packing stores each block of B output rows (`torch_pack_block`) as [K, B / 2] bytes: byte
        (k, i) holds row i's value in its low nibble and row i + B / 2's in its high nibble.
        """
        n, k = self.out_features, self.in_features
        dtype = dtype or self.dtype
        assert self.dense_ok()
        if self.layout == "vnni":  # only ever where the native kernels are loaded
            lib = library()
            assert lib is not None
            wt = torch.empty(k, n, dtype=torch.bfloat16)
            lib.ulm_dequant_int4_vnni_bf16_t(self.packed.data_ptr(), self.scales_zeros.data_ptr(), n, k, wt.data_ptr())
            return wt.t().to(dtype)  # the same bits as from torch's layout (tested)
        block = torch_pack_block()
        assert block is not None
        # the native unpacking writes bf16 and reads 64-row blocks
        native = dtype == self.dtype == torch.bfloat16 and block == PACK_BLOCK and self.packed.device.type == "cpu"
        lib = library() if native else None
        if lib is not None and self.packed.is_contiguous() and self.scales_zeros.is_contiguous():
            wt = torch.empty(k, n, dtype=torch.bfloat16)  # Wᵀ: unpacked without a transpose, as fast for the GEMM
            if lib.ulm_dequant_int4_bf16_t(self.packed.data_ptr(), self.scales_zeros.data_ptr(), n, k, GROUP,
                                           wt.data_ptr()) != 0:
                raise MemoryError("no memory to unpack an int4 weight")
            return wt.t()  # [N, K] view: the same bits as the torch ops below (tested), several times faster
        g = k // GROUP
        q = _unpack_torch_layout(self.packed, n, k, block).to(dtype).view(n, g, GROUP)  # (N, G, 32)
        sz = self.scales_zeros.transpose(0, 1).to(dtype)  # (N, G, 2)
        scale = sz[..., 0:1]  # (N, G, 1)
        zero = sz[..., 1:2] - 8 * scale  # w = q·scale + (zero − 8·scale)
        return q.mul_(scale).add_(zero).view(n, k)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group={GROUP}, dtype={self.dtype}, "
                f"layout={self.layout}")


class Int8Linear(nn.Module):
    """y = x @ Wᵀ (+ b) with W in int8, one scale per output row. x: [..., K] (cast to `dtype`) → [..., N].

    weight: int8 [N, K]; scales: `dtype` [N]. Build one from a float weight with `Int8Linear.quantize`.
    """

    def __init__(self, weight: Tensor, scales: Tensor, bias: Tensor | None = None,
                 dtype: torch.dtype = torch.bfloat16, out_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.dtype, self.out_dtype = dtype, out_dtype or dtype
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales.to(dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype).contiguous())

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor], dtype: torch.dtype = torch.bfloat16,
                   out_dtype: torch.dtype | None = None) -> Int8Linear:
        """Rebuilt from its state dict."""
        return cls(state["weight"], state["scales"], state.get("bias"), dtype, out_dtype)

    @classmethod
    def quantize(cls, weight: Tensor, bias: Tensor | None = None, dtype: torch.dtype = torch.bfloat16,
                 out_dtype: torch.dtype | None = None) -> Int8Linear:
        """Symmetric per-row int8 (absmax / 127) of a float weight [N, K]."""
        w = weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)  # (N,)
        q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        return cls(q, scale, bias, dtype, out_dtype)

    def forward(self, x: Tensor) -> Tensor:
        y = torch._weight_int8pack_mm(x.reshape(-1, self.in_features).to(self.dtype), self.weight,
                                      self.scales)  # (M, N)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(self.out_dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.dtype}"


def _int4_from_blocks(parts: list[BlockTensor], bias: Tensor | None, dtype: torch.dtype,
                      out_dtype: torch.dtype | None) -> Int4Linear:
    w4 = Int4Weight.cat([int4_from_raw(r) for r in parts])
    return Int4Linear.quantize(w4, bias, dtype, out_dtype)


def _int4_from_float(weight: Tensor, bias: Tensor | None, dtype: torch.dtype,
                     out_dtype: torch.dtype | None) -> Int4Linear:
    return Int4Linear.quantize(int4_from_float(weight), bias, dtype, out_dtype)


def _kquant_from_blocks(parts: list[BlockTensor], bias: Tensor | None, dtype: torch.dtype,
                        out_dtype: torch.dtype | None) -> KQuantLinear:
    return KQuantLinear.from_blocks(parts, bias, out_dtype or dtype)


@dataclass(frozen=True)
class LinearKind:
    """One kind of quantised linear: its module and the ways one is made.

    fits(N, K): whether it takes an N×K weight; from_float(weight, bias, dtype, out_dtype): quantised from a
    float weight, None for a kind made from blocks only; from_blocks(parts, bias, dtype, out_dtype): from GGUF
    blocks as stored, losslessly (a fused weight's parts in row order), None where no block type maps onto
    it; marker: the state-dict entry that tells this kind's saved tensors from another's (see
    `linear_from_state`; None for a kind that is not rebuilt from its state dict alone).
    """

    module: type[Int4Linear] | type[Int8Linear] | type[KQuantLinear]
    fits: Callable[[int, int], bool]
    from_float: Callable[[Tensor, Tensor | None, torch.dtype, torch.dtype | None], nn.Module] | None
    from_blocks: Callable[[list[BlockTensor], Tensor | None, torch.dtype, torch.dtype | None], nn.Module] | None
    marker: str | None


LINEAR_KINDS: dict[str, LinearKind] = {
    "int4": LinearKind(Int4Linear, int4_supported, _int4_from_float, _int4_from_blocks, marker="packed"),
    "int8": LinearKind(Int8Linear, lambda n, k: True, Int8Linear.quantize, None, marker="scales"),
    # GGUF files hold only whole blocks, so every K the blocks come in is one the kernels take
    "kquant": LinearKind(KQuantLinear, lambda n, k: True, None, _kquant_from_blocks, marker=None),
}
SCHEMES = tuple(LINEAR_KINDS)
# Per scheme, the GGUF block types whose tensors become a linear of the kind named, from their blocks as stored
# (lossless). Every other tensor (F32/F16, and under int4 Q8_0 and the K-quants, all dequantised by the loader)
# is quantised from its float weight to the scheme's own kind (int4 for kquant), and a shape that kind does
# not take falls back to int8.
FROM_BLOCKS: dict[str, dict[str, str]] = {"int4": {"Q4_0": "int4", "Q4_1": "int4"}, "int8": {},
                                          "kquant": dict.fromkeys(BLOCK_FORMATS, "kquant")}


def block_kind(scheme: str, parts: list[BlockTensor] | None) -> str | None:
    """The kind whose module takes these GGUF blocks (a fused weight's parts) losslessly under `scheme`: the
    one kind all their types map onto, None when they map onto none or several."""
    kinds = {FROM_BLOCKS[scheme].get(r.ggml_type) for r in parts or ()}
    return kinds.pop() if len(kinds) == 1 else None


def quantized_linear(weight: Tensor, bias: Tensor | None, scheme: str, raw: list[BlockTensor] | None = None,
                     dtype: torch.dtype = torch.bfloat16, out_dtype: torch.dtype | None = None) -> nn.Module:
    """The quantised module for one weight [N, K] under `scheme`, by the tables above: from `raw` (the GGUF
    blocks of the weight, or of a fused weight's parts in row order) where every part's type maps onto one
    kind that takes the shape, else from the float weight."""
    if scheme not in LINEAR_KINDS:
        raise ValueError(f"unknown quantisation scheme {scheme!r}; expected one of {SCHEMES}")
    n, k = weight.shape
    name = block_kind(scheme, raw)
    if name is not None and raw and LINEAR_KINDS[name].fits(n, k):
        if sum(r.shape[0] for r in raw) != n or any(r.shape[-1] != k for r in raw):
            raise ValueError(f"raw blocks encode {' + '.join(f'{r.shape[0]}×{r.shape[-1]}' for r in raw)}, "
                             f"the weight is {n}×{k}")
        make = LINEAR_KINDS[name].from_blocks
        assert make is not None
        return make(raw, bias, dtype, out_dtype)
    kind = next(LINEAR_KINDS[s] for s in (scheme, "int4", "int8")
                if LINEAR_KINDS[s].from_float is not None and LINEAR_KINDS[s].fits(n, k))
    assert kind.from_float is not None
    return kind.from_float(weight, bias, dtype, out_dtype)


def linear_from_state(state: Mapping[str, Tensor], dtype: torch.dtype = torch.bfloat16,
                      out_dtype: torch.dtype | None = None) -> nn.Module:
    """A quantised linear rebuilt from its own saved tensors (its state dict: {"packed": ..., ...})."""
    kind = next((k for k in LINEAR_KINDS.values() if k.marker is not None and k.marker in state), None)
    if kind is None:
        raise ValueError(f"the tensors {sorted(state)} are not those of a quantised linear")
    return kind.module.from_state(state, dtype, out_dtype)


# Fused modules of `ulm.model` and the canonical weights they stack, in row order.
FUSED = {"wqkv": ("wq", "wk", "wv"), "w_gate_up": ("w_gate", "w_up")}


def raw_parts(name: str, raw: Mapping[str, BlockTensor]) -> list[BlockTensor] | None:
    """The raw blocks of the linear `name` (all parts of a fused one), or None when any is missing."""
    prefix, _, attr = name.rpartition(".")
    parts = [f"{prefix}.{p}.weight" for p in FUSED[attr]] if attr in FUSED else [f"{name}.weight"]
    if name == "lm_head" and "lm_head.weight" not in raw:
        parts = ["embed.weight"]  # tied head
    found = [raw.get(p) for p in parts]
    return None if any(f is None for f in found) else [f for f in found if f is not None]


def quantize_model(model: nn.Module, scheme: str = "int4", raw: Mapping[str, BlockTensor] | None = None,
                   dtype: torch.dtype = torch.bfloat16, skip: tuple[str, ...] = (),
                   out_dtypes: Mapping[str, torch.dtype] | None = None) -> nn.Module:
    """Swap every `nn.Linear` of `model` for its quantised module, in place, and return the model.

    raw maps canonical state-dict names (`layers.0.attn.wq.weight`) to their GGUF blocks, used where that is
    lossless (fused linears take their parts'). Linears named in `skip` stay as they are; `out_dtypes` sets
    the output dtype of named linears (e.g. {"lm_head": torch.float32}). A tied LM head gets its own
    quantised copy; the embedding keeps its table for lookups.
    """
    raw = raw or {}
    out_dtypes = out_dtypes or {}
    targets = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and name not in skip]
    for name, mod in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = quantized_linear(mod.weight, mod.bias, scheme, raw_parts(name, raw), dtype, out_dtypes.get(name))
        setattr(parent, attr, new)
    return model
