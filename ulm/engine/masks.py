"""The token masks of one engine step's constrained rows, computed while the step's forward runs.

    pending = masks.begin([slot.constraint or None for each row that samples this step])   # before forward
    logits = backend.forward(...)
    mask = masks.take(pending)     # int32 [rows, ⌈V/32⌉], all bits set for unconstrained rows

A row's next mask depends only on the tokens it already sampled, so it can be computed during the forward
that produces the logits it will mask. `begin` hands the rows' parsers to llguidance's executor on a
worker thread (llguidance drops the GIL; the forward runs in native code too), `take` waits for it. A mask
that allows no token at all (a parser that failed) is reported by `empty_rows`, so the engine can end that
request instead of sampling from nothing. With `overlap` off, `begin` computes the masks at once in the
calling thread (the benchmark's comparison: `python -m ulm.bench.grammar`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from ulm.guided.constraint import Constraint


@dataclass
class Pending:
    """Masks being computed for one step."""

    out: torch.Tensor  # int32 [rows, W]
    done: Future[None]


class StepMasks:
    """Computes masks for up to `rows` rows of a `vocab_size` vocabulary."""

    def __init__(self, vocab_size: int, overlap: bool = True) -> None:
        import llguidance

        self.words = (vocab_size + 31) // 32
        self.overlap = overlap
        self._executor: Any = llguidance.LLExecutor(num_threads=1)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ulm-masks")

    def begin(self, constraints: Sequence[Constraint | None]) -> Pending:
        out = torch.full((len(constraints), self.words), -1, dtype=torch.int32)  # [rows, W]: all allowed
        work = [(c.matcher, i) for i, c in enumerate(constraints) if c is not None]
        args = (work, out.data_ptr(), 4 * self.words, len(constraints))
        if self.overlap:
            return Pending(out, self._thread.submit(self._executor.unsafe_compute_mask_ptr, *args))
        done: Future[None] = Future()
        self._executor.unsafe_compute_mask_ptr(*args)
        done.set_result(None)
        return Pending(out, done)

    def take(self, pending: Pending) -> torch.Tensor:
        pending.done.result()
        return pending.out

    @staticmethod
    def empty_rows(mask: torch.Tensor) -> list[int]:
        """Rows of `mask` [rows, W] that allow no token."""
        return torch.nonzero((mask == 0).all(dim=1)).flatten().tolist()

    def close(self) -> None:
        self._thread.shutdown(wait=False)
