"""The KV cache: static K/V buffers for a batch of rows, written in place, with an explicit lifecycle.

    cache = KVCache(config, max_batch=4, max_len=256)    # allocate
    logits = model(ids, cache=cache, start=cache.lengths[:B])  # the model writes K/V at start..start+T-1
    cache.commit(range(B), starts, [T] * B)              # whoever ran the forward records what it wrote
    cache.truncate(0, 10)                                 # keep row 0's first 10 positions (prefix reuse)
    cache.grow(512)                                       # room for longer rows (what is filled is kept)
    cache.reset()                                         # all rows empty again (buffers are kept)

Buffers k, v: [n_layers, max_batch, n_kv_heads, max_len, head_dim]; `lengths` LongTensor [max_batch]
counts the filled positions of each row, on the CPU whatever the buffers' device (host bookkeeping that no
kernel reads). The model owns writing K/V (`update`); `lengths` change only
through this class's methods, called by whoever runs the forward (the engine's backend): a forward never
changes them, so a step can be retried or discarded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from ulm.config import ModelConfig

if TYPE_CHECKING:
    from ulm.layers.attention import AttnPlan

Rows = int | Iterable[int] | torch.Tensor | None


class KVCache:
    """Static key/value buffers for up to `max_batch` sequences of up to `max_len` tokens."""

    def __init__(self, config: ModelConfig, max_batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        if max_batch <= 0 or max_len <= 0:
            raise ValueError(f"a KV cache needs max_batch > 0 and max_len > 0, got {max_batch} and {max_len}")
        assert config.n_kv_heads is not None and config.head_dim is not None
        shape = (config.n_layers, max_batch, config.n_kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.lengths = torch.zeros(max_batch, dtype=torch.long)  # host bookkeeping, on the CPU wherever K/V are

    @property
    def max_batch(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def _index(self, rows: Rows) -> slice | torch.Tensor:
        if rows is None:
            return slice(None)
        if isinstance(rows, int):
            return torch.tensor([rows], device=self.lengths.device)
        return torch.as_tensor(list(rows) if not isinstance(rows, torch.Tensor) else rows,
                               dtype=torch.long, device=self.lengths.device)

    def reset(self, rows: Rows = None) -> None:
        """Mark rows (default: all) empty; the buffers are reused, not cleared."""
        self.lengths[self._index(rows)] = 0

    def truncate(self, row: int, length: int) -> None:
        """Keep only the first `length` positions of `row` (to reuse a shared prompt prefix)."""
        current = int(self.lengths[row])
        if not 0 <= length <= current:
            raise ValueError(f"cannot truncate row {row} of length {current} to {length}")
        self.lengths[row] = length

    def advance(self, rows: Rows, n: int | torch.Tensor) -> None:
        """Record that `n` more positions of `rows` were written (n: int, or LongTensor per row)."""
        index = self._index(rows)
        self.lengths[index] += n
        if int(self.lengths[index].max()) > self.max_len:
            self.lengths[index] = self.lengths[index].clamp_(max=self.max_len)
            raise ValueError(f"KV cache row advanced past its max length {self.max_len}")

    def commit(self, rows: Sequence[int], starts: Sequence[int], counts: Sequence[int]) -> None:
        """Record a forward that wrote `counts[b]` positions of row `rows[b]` from `starts[b]` on: the row now
        holds its first starts[b] + counts[b] positions (what it held past starts[b] is dropped)."""
        ends = [s + n for s, n in zip(starts, counts, strict=True)]
        if min(starts) < 0 or max(ends) > self.max_len:
            raise ValueError(f"a write to positions {min(starts)}..{max(ends) - 1} does not fit the KV cache's "
                             f"max length {self.max_len}")
        if len(rows) == 1:  # a single stream's step: no index tensors to build
            self.lengths[rows[0]] = ends[0]
        else:
            device = self.lengths.device
            self.lengths[torch.tensor(rows, device=device)] = torch.tensor(ends, device=device)

    @torch.inference_mode()  # the buffers are inference tensors when a forward made them: stay in that mode
    def grow(self, max_len: int) -> None:
        """Make every row `max_len` positions long, keeping what the rows hold (new buffers, the filled
        positions copied; a forward bound to the old buffers must bind again)."""
        if max_len < self.max_len:
            raise ValueError(f"cannot shrink a KV cache of max length {self.max_len} to {max_len}")
        used = int(self.lengths.max())
        shape = (*self.k.shape[:3], max_len, self.k.shape[4])
        k = torch.zeros(shape, dtype=self.k.dtype, device=self.k.device)
        v = torch.zeros(shape, dtype=self.v.dtype, device=self.v.device)
        k[:, :, :, :used] = self.k[:, :, :, :used]  # [L, B, Hkv, used, hd]
        v[:, :, :, :used] = self.v[:, :, :, :used]
        self.k, self.v = k, v

    def update(self, layer: int, plan: AttnPlan, k: torch.Tensor,
               v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, Hkv, T, hd] of `layer` where `plan` says; return the K/V to attend to [B, Hkv, S, hd]."""
        k_layer, v_layer = self.k[layer], self.v[layer]  # [max_batch, Hkv, max_len, hd]
        assert plan.rows is not None and plan.pos is not None and plan.keys is not None
        if isinstance(plan.pos, slice):  # every row at the same positions: plain slices
            assert isinstance(plan.rows, slice)
            k_layer[plan.rows, :, plan.pos] = k
            v_layer[plan.rows, :, plan.pos] = v
            return k_layer[plan.rows, :, plan.keys], v_layer[plan.rows, :, plan.keys]  # views
        assert isinstance(plan.pos, torch.Tensor) and plan.row_index is not None
        k_layer[plan.row_index, :, plan.pos] = k.transpose(1, 2)  # row_index [B, 1] × pos [B, T]: [B, T, Hkv, hd]
        v_layer[plan.row_index, :, plan.pos] = v.transpose(1, 2)
        # Contiguous rows (a slice) are read as views; scattered rows are gathered: [B, Hkv, S, hd]
        return k_layer[plan.rows, :, plan.keys], v_layer[plan.rows, :, plan.keys]
