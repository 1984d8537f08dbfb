"""`KQuantLinear`: a linear whose weight stays in its GGUF block quants (Q4_K, Q5_K, Q6_K, Q8_0, Q5_0), one
part or several stacked along the outputs (a fused q/k/v whose v rows are Q6_K and q/k rows Q4_K), run
by µLM's native kernels (ulm/kernels/ulm_kquant*.c) with no float copy of the weight kept.

- `KQuantLinear.from_blocks(parts, bias)` builds one from GGUF tensors (`BlockTensor`s, e.g. the loader's
  `GGUFTensor`). Where the native kernels are built for AVX-512 VNNI, each part is repacked once into the
  kernels' "tile" layout (same values, scales and byte count as the file; `layout == "tiles"`); elsewhere
  the GGUF rows are kept as they are (`layout == "rows"`). Either way in transparent huge pages
  (`ulm.kquant.memory`: they nearly double the streaming bandwidth here).
- forward: the VNNI kernel at any number of rows (bias added in the kernel; bf16 or fp32 out): it beats
  unpacking to bf16 and torch's dense GEMM up to 512 rows and more (1.2-1.5× at 512, measured on the
  1.5B's shapes), and a row's result never depends on the others. Activations are int8 per group of 32;
  a `precise` linear takes int16 for the tokens being decoded (any 2-D input, or [B, 1, K]) and int8 for
  a prompt's ([B, T > 1, K]): decoding streams the weights, which hides int16's doubled dot products, while
  a prefill is bound by them (int16 1.6-1.7× int8's time at 256-512 rows; unpacking Wᵀ to bf16 for a dense
  GEMM, `dense_matmul`, 1.5-1.6×). With the rows layout (ULM_NATIVE=0, no compiler, no VNNI): the reference
  dequantisation (`ulm.kquant.formats`) of a chunk of rows at a time and an fp32 matmul, slow but right.
- `descriptor` is the address of the C `ulm_kq_linear` (ulm_kquant.h) that runs it, for native code that
  calls `ulm_kq_mm` itself (a fused decode step); it stays valid while the module and its buffers live.
- `spec` ((type, rows) per part), `in_features` and the `data` buffer are all it needs to be rebuilt
  (`KQuantLinear(spec, in_features, data, layout, bias)`), e.g. from a cache of the repacked tiles read
  into a `huge_pages_buffer` arena of the whole model, each linear's data a view into it (keyed by
  LAYOUT_VERSION).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from ulm.kernels.native import library
from ulm.kquant.formats import FORMATS, block_format, dequantize
from ulm.kquant.memory import huge_pages_buffer

if TYPE_CHECKING:
    from ulm.quant import BlockTensor

TILE = 32  # output rows per tile of the native layout
# The tile layout's version (ulm/kernels/ulm_kquant.c, ulm_kquant_layout.h): part of any cache key of repacked
# tiles, raised with every change to the layout.
LAYOUT_VERSION = 1
DENSE_CHUNK_BYTES = 16 << 20  # bf16 Wᵀ columns unpacked at a time by the dense path


class _Part(ctypes.Structure):
    """ulm_kq_part of ulm_kquant.h."""

    _fields_ = [("type", ctypes.c_int64), ("n0", ctypes.c_int64), ("N", ctypes.c_int64), ("tiles", ctypes.c_void_p)]


class _Linear(ctypes.Structure):
    """ulm_kq_linear of ulm_kquant.h."""

    _fields_ = [("N", ctypes.c_int64), ("K", ctypes.c_int64), ("n_parts", ctypes.c_int64), ("parts", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("precise", ctypes.c_int64)]


def kernels_available() -> bool:
    """Whether this machine runs the native block-quant kernels (a VNNI build of the library)."""
    lib = library()
    return lib is not None and bool(lib.ulm_kq_vnni())


def part_bytes(ggml_type: str, rows: int, k: int, layout: str = "tiles") -> int:
    """Bytes one part of `rows` rows over K inputs takes in `layout` (tiles: whole tiles, rows past N zero)."""
    fmt = block_format(ggml_type, k)
    if layout == "rows":
        return rows * fmt.row_bytes(k)
    return -(-rows // TILE) * TILE * fmt.row_bytes(k)  # whole tiles of 32 rows (the file's bytes per row)


def _rows_of(raw: BlockTensor) -> np.ndarray:
    """A tensor's GGUF rows as uint8 [N, row bytes] with contiguous rows (a view where they already are)."""
    rows = np.asarray(raw.blocks)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.strides[1] != 1:
        rows = np.ascontiguousarray(rows, dtype=np.uint8)
    return rows


class KQuantLinear(nn.Module):
    """y = x @ Wᵀ (+ b), W [N, K] in GGUF block quants. x: [..., K] (bf16 or fp32 into the kernel, other dtypes
    as fp32) → [..., N] in `out_dtype`.

    spec: (GGML type, rows) per part, in output order; data: uint8, the parts' bytes one after the other
    in `layout` ("tiles": ceil(rows / 32) tiles each, "rows": the GGUF rows); bias: [N] (kept fp32);
    precise: the kernel quantises activations to int16 (two int8 planes: twice its dot products, the same
    bytes read) instead of int8, for linears whose inputs have outlier channels (ulm_kquant_mm.c has the
    figures: on Qwen2.5-Coder-1.5B, int16 on w_gate_up and w_down lifts top-1 agreement from 96.5% to 98.8%).
    """

    def __init__(self, spec: Sequence[tuple[str, int]], in_features: int, data: Tensor, layout: str,
                 bias: Tensor | None = None, out_dtype: torch.dtype = torch.bfloat16, precise: bool = False) -> None:
        super().__init__()
        if layout not in ("tiles", "rows"):
            raise ValueError(f"unknown layout {layout!r}: expected 'tiles' or 'rows'")
        if layout == "tiles" and not kernels_available():
            raise ValueError("the tile layout needs the native kernels for AVX-512 VNNI, which this machine lacks")
        self.spec = tuple((str(t), int(n)) for t, n in spec)
        if not self.spec or any(n <= 0 for _, n in self.spec):
            raise ValueError(f"a linear needs parts of at least one row each, not {self.spec}")
        self.in_features, self.out_features = in_features, sum(n for _, n in self.spec)
        self.layout, self.out_dtype, self.precise = layout, out_dtype, precise
        self._offsets = np.cumsum([0] + [part_bytes(t, n, in_features, layout) for t, n in self.spec]).tolist()
        if data.dtype != torch.uint8 or data.numel() != self._offsets[-1]:
            raise ValueError(f"{layout} data for {self.spec} × {in_features} is {self._offsets[-1]} bytes of uint8, "
                             f"not {data.numel()} of {data.dtype}")
        if bias is not None and bias.shape != (self.out_features,):
            raise ValueError(f"bias of shape {tuple(bias.shape)} for {self.out_features} outputs")
        self.register_buffer("data", data.reshape(-1).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self._bound: tuple[int, int, bool] | None = None

    @classmethod
    def from_blocks(cls, parts: Sequence[BlockTensor], bias: Tensor | None = None,
                    out_dtype: torch.dtype = torch.bfloat16, precise: bool = False) -> KQuantLinear:
        """The linear of GGUF tensors stacked along N (each [N_i, K], the same K), repacked for the native
        kernels where they run."""
        if not parts:
            raise ValueError("a linear needs at least one part")
        shapes = [tuple(int(s) for s in p.shape) for p in parts]
        if any(len(s) != 2 for s in shapes) or len({s[1] for s in shapes}) != 1:
            raise ValueError(f"parts must be 2-D weights of one input width, not {shapes}")
        k = shapes[0][1]
        rows = [_rows_of(p) for p in parts]
        for p, r, (n, _) in zip(parts, rows, shapes, strict=True):
            want = (n, block_format(p.ggml_type, k).row_bytes(k))
            if r.shape != want:
                raise ValueError(f"{p.ggml_type} blocks of shape {r.shape} do not encode a {n}×{k} weight ({want})")
        spec = [(p.ggml_type, s[0]) for p, s in zip(parts, shapes, strict=True)]
        layout = "tiles" if kernels_available() else "rows"
        data = huge_pages_buffer(sum(part_bytes(t, n, k, layout) for t, n in spec))
        at = 0
        lib = library()
        for (ggml_type, n), r in zip(spec, rows, strict=True):
            size = part_bytes(ggml_type, n, k, layout)
            if layout == "rows":
                data[at:at + size] = torch.from_numpy(np.ascontiguousarray(r).reshape(-1))
            else:
                assert lib is not None
                rc = lib.ulm_kq_repack(FORMATS[ggml_type].ggml_id, r.ctypes.data, r.strides[0], n, k,
                                       data.data_ptr() + at)
                if rc != 0:
                    raise MemoryError(f"no memory to repack a {ggml_type} weight") if rc == -2 else \
                        ValueError(f"cannot repack {ggml_type} {n}×{k}")
            at += size
        return cls(spec, k, data, layout, bias, out_dtype, precise)

    @property
    def descriptor(self) -> int:
        """The address of this linear's `ulm_kq_linear` (tiles layout only), rebuilt if its buffers moved."""
        if self.layout != "tiles":
            raise ValueError("only the tiles layout has a native descriptor")
        key = (self.data.data_ptr(), 0 if self.bias is None else self.bias.data_ptr(), self.precise)
        if self._bound != key:
            parts = (_Part * len(self.spec))()
            n0 = 0
            for part, (ggml_type, n), at in zip(parts, self.spec, self._offsets, strict=False):
                part.type, part.n0, part.N, part.tiles = FORMATS[ggml_type].ggml_id, n0, n, self.data.data_ptr() + at
                n0 += n
            self._struct = _Linear(self.out_features, self.in_features, len(parts), ctypes.addressof(parts),
                                   key[1] or None, int(self.precise))
            self._parts, self._bound = parts, key  # the struct points into parts
        return ctypes.addressof(self._struct)

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, self.in_features)  # [M, K]
        if self.layout == "rows":
            y = self._reference(x2)
        else:
            decoded = x.dim() < 3 or x.shape[-2] == 1  # else a prompt's tokens: int8 (see the module docstring)
            y = self.matmul(x2, self.out_dtype, None if decoded else 0)
        return y.view(*x.shape[:-1], self.out_features).to(self.out_dtype)

    def matmul(self, x: Tensor, out_dtype: torch.dtype = torch.bfloat16, precise_rows: int | None = None) -> Tensor:
        """x [M, K] → x @ Wᵀ + b [M, N] on the native kernel (tiles layout), written in out_dtype (bf16 or fp32);
        of a precise linear, the first `precise_rows` rows (None: all) take int16 activations, the rest int8."""
        lib = library()
        assert lib is not None and self.layout == "tiles"
        x = x.contiguous() if x.dtype in (torch.bfloat16, torch.float32) else x.float().contiguous()
        f32 = out_dtype == torch.float32
        y = torch.empty(x.shape[0], self.out_features, dtype=torch.float32 if f32 else torch.bfloat16)
        rows = x.shape[0] if precise_rows is None else precise_rows
        if not 0 <= rows <= x.shape[0]:
            raise ValueError(f"precise_rows {precise_rows} is not within 0..{x.shape[0]}")
        rc = lib.ulm_kq_mm(self.descriptor, x.data_ptr(), int(x.dtype == torch.float32), x.shape[0], rows,
                           y.data_ptr(), int(f32))
        if rc != 0:
            raise MemoryError("no memory for the block-quant kernel's activations")
        return y

    def dense_t(self, lo: int = 0, hi: int | None = None) -> Tensor:
        """Columns lo .. hi − 1 of Wᵀ as bf16 [K, hi − lo]: the exact weights rounded to bf16."""
        hi = self.out_features if hi is None else hi
        if self.layout == "rows":
            return self._reference_rows(lo, hi).t().bfloat16()
        lib = library()
        assert lib is not None
        wt = torch.empty(self.in_features, hi - lo, dtype=torch.bfloat16)
        if lib.ulm_kq_dequant_t(self.descriptor, lo, hi, wt.data_ptr()) != 0:
            raise ValueError(f"columns {lo}..{hi} are not in 0..{self.out_features}")
        return wt

    def _chunks(self, bytes_per_column: int) -> list[tuple[int, int]]:
        step = max(TILE, DENSE_CHUNK_BYTES // bytes_per_column // TILE * TILE)
        return [(lo, min(lo + step, self.out_features)) for lo in range(0, self.out_features, step)]

    def dense_matmul(self, x: Tensor) -> Tensor:
        """x [M, K] → x @ Wᵀ + b [M, N] bf16 (tiles layout): bf16 GEMMs over column chunks of the unpacked weight
        (about DENSE_CHUNK_BYTES of it at a time: a 151936-row LM head never has its whole bf16 table in
        memory); what the kernel is measured against (`ulm.kquant.bench --prefill`)."""
        xb = x.to(torch.bfloat16)
        y = torch.empty(x.shape[0], self.out_features, dtype=torch.bfloat16)
        for lo, hi in self._chunks(2 * self.in_features):
            y[:, lo:hi] = xb @ self.dense_t(lo, hi)  # [M, K] @ [K, hi − lo]
        return y if self.bias is None else y + self.bias

    def _reference_rows(self, lo: int, hi: int) -> Tensor:
        """Rows lo .. hi − 1 of W as fp32, dequantised from the GGUF rows (rows layout)."""
        k, out, n0 = self.in_features, [], 0
        for (ggml_type, n), at in zip(self.spec, self._offsets, strict=False):
            a, b = max(lo, n0) - n0, min(hi, n0 + n) - n0
            if a < b:
                row = block_format(ggml_type, k).row_bytes(k)
                out.append(dequantize(ggml_type, self.data[at + a * row:at + b * row].view(b - a, row), k))
            n0 += n
        return torch.cat(out)

    def _reference(self, x: Tensor) -> Tensor:
        """The fallback: chunks of rows dequantised to fp32 and an fp32 matmul."""
        xf = x.float()
        y = torch.empty(x.shape[0], self.out_features)
        for lo, hi in self._chunks(4 * self.in_features):
            y[:, lo:hi] = xf @ self._reference_rows(lo, hi).t()  # [M, K] @ [K, hi − lo]
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        parts = ", ".join(f"{t}×{n}" for t, n in self.spec)
        return (f"in_features={self.in_features}, out_features={self.out_features}, parts=[{parts}], "
                f"layout={self.layout}, precise={self.precise}")
