"""Where a forward's tokens sit in a KV cache: worked out in one place for every path that runs a forward.

- `row_starts(batch, cache, start, rows, tokens, context)`: each batch row's cache row and first position
  (`start` None: the cache's filled lengths; an int: every row alike; `tokens`: one count for all rows or
  one per row), checked once: one entry per row, rows inside the cache, positions ≥ 0 (ValueError), and the
  last position inside both the cache and the model's context (`ContextLengthError`).
- `first_key(pos, window)`: the first key a query at `pos` attends to (0, or where its sliding window starts).
- `token_spans(rows, starts, lengths, window)`: int64 [N, 3] of (cache row, first key, last key + 1) for
  every token of a step, sequence b's `lengths[b]` tokens from `starts[b]` on: what the native step takes.

Shared by the generic forward (`ulm.model.Transformer`'s attention plan) and the fast runtime
(`ulm.fast.runtime`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ulm.errors import ContextLengthError

if TYPE_CHECKING:
    from ulm.kv_cache import KVCache


def first_key(pos: int, window: int | None) -> int:
    """The first key position a query at `pos` may attend to."""
    return 0 if window is None else max(0, pos - window + 1)


def row_starts(batch: int, cache: KVCache, start: torch.Tensor | Sequence[int] | int | None,
               rows: torch.Tensor | Sequence[int] | None, tokens: int | Sequence[int],
               context: int) -> tuple[list[int], list[int]]:
    """(cache row, first position) of each of `batch` rows feeding `tokens` tokens each (or tokens[b] for row b)."""
    row_list = list(range(batch)) if rows is None else [int(r) for r in _listed(rows)]
    if start is None:
        start = cache.lengths[row_list]
    got = _listed(start)
    starts = [int(got)] * batch if isinstance(got, int) else [int(s) for s in got]
    counts = [tokens] * batch if isinstance(tokens, int) else list(tokens)
    if not len(starts) == len(row_list) == len(counts) == batch:
        raise ValueError(f"start and rows need one entry per batch row ({batch}), "
                         f"got {len(starts)} and {len(row_list)}")
    if not 0 <= min(row_list) <= max(row_list) < cache.max_batch:
        raise ValueError(f"cache rows {row_list} outside the cache's {cache.max_batch} rows")
    if min(starts) < 0:
        raise ValueError(f"start positions must be ≥ 0, got {starts}")
    end, limit = max(s + n for s, n in zip(starts, counts, strict=True)), min(cache.max_len, context)
    if end > limit:
        raise ContextLengthError(end, limit)
    return row_list, starts


def _listed(values: torch.Tensor | Sequence[int] | int) -> Sequence[int] | int:
    return values.tolist() if isinstance(values, torch.Tensor) else values


def token_spans(rows: Sequence[int], starts: Sequence[int], lengths: Sequence[int], window: int | None) -> torch.Tensor:
    """int64 [sum(lengths), 3]: (cache row, first key, position + 1) of every token, sequence by sequence."""
    return torch.tensor([[r, first_key(p, window), p + 1]
                         for r, s, n in zip(rows, starts, lengths, strict=True) for p in range(s, s + n)])
