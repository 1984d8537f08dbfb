"""`KQuantEmbedding`: a token embedding whose table stays in its GGUF block quants (e.g. Qwen2.5-Coder's Q4_K
or Q5_0 `token_embd`, 151936 rows: 933 MB as fp32, 131 MB as Q4_K). A lookup dequantises only the rows
asked for, in C (`ulm_kq_dequant_rows`, any CPU with a compiler) or with the torch reference without one;
both equal gguf's dequantisation bit for bit, and the result is fp32 (the residual stream's dtype).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from ulm.kernels.native import library
from ulm.kquant.formats import FORMATS, block_format, dequantize

if TYPE_CHECKING:
    from ulm.quant import BlockTensor


class KQuantEmbedding(nn.Module):
    """ids [...] → their rows [..., D] fp32 from a [V, D] table of GGUF blocks (rows: uint8 [V, row bytes])."""

    def __init__(self, ggml_type: str, rows: Tensor, dim: int) -> None:
        super().__init__()
        fmt = block_format(ggml_type, dim)
        if rows.dtype != torch.uint8 or rows.dim() != 2 or rows.shape[1] != fmt.row_bytes(dim):
            raise ValueError(f"{ggml_type} rows of {dim} weights are uint8 [V, {fmt.row_bytes(dim)}], "
                             f"not {rows.dtype} {tuple(rows.shape)}")
        self.ggml_type, self.num_embeddings, self.embedding_dim = ggml_type, rows.shape[0], dim
        self.register_buffer("rows", rows if rows.is_contiguous() else rows.contiguous())

    @classmethod
    def from_blocks(cls, raw: BlockTensor, copy: bool = True) -> KQuantEmbedding:
        """The embedding of a GGUF tensor [V, D], its rows copied; or, with copy=False, viewed where they are
        (contiguous rows in a writable array, e.g. a file mapping that stays mapped while the embedding lives:
        only the pages of the rows looked up become resident, once the loader has released what it read)."""
        v, d = (int(s) for s in raw.shape)
        if not copy:
            return cls(raw.ggml_type, torch.from_numpy(raw.blocks).view(v, -1), d)
        rows = np.ascontiguousarray(raw.blocks, dtype=np.uint8)
        return cls(raw.ggml_type, torch.from_numpy(rows).view(v, -1).clone(), d)

    def forward(self, ids: Tensor) -> Tensor:
        flat = ids.reshape(-1).long().contiguous()  # [n]
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise IndexError(f"token ids must be in 0..{self.num_embeddings - 1}")
        lib = library()
        if lib is None:
            out = dequantize(self.ggml_type, self.rows[flat], self.embedding_dim)
        else:
            out = torch.empty(flat.numel(), self.embedding_dim)
            lib.ulm_kq_dequant_rows(FORMATS[self.ggml_type].ggml_id, self.rows.data_ptr(), self.rows.stride(0),
                                    flat.data_ptr(), flat.numel(), self.embedding_dim, out.data_ptr())
        return out.view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, type={self.ggml_type}"
