"""The token masks of one engine step's constrained rows, computed before or during the step's forward.

    pending = masks.begin([slot.constraint or None for each row that samples this step])   # before forward
    logits = backend.forward(...)
    mask = masks.take(pending)     # int32 [rows, ⌈V/32⌉], all bits set for unconstrained rows

A row's next mask depends only on the tokens it already sampled, so it can be computed during the forward
that produces the logits it will mask: with `overlap`, `begin` hands the rows' parsers to llguidance's
executor on a worker thread (llguidance drops the GIL; the forward runs in native code too) and `take`
waits for it; without, `begin` computes them at once. Overlap pays only where a core is free during the
forward: measured on 2 busy cores with torch on both (`python -m ulm.bench.grammar`), cb's edit grammar
cost 0.06 ms a step computed in line and 0.3 ms waited for with overlap (the worker got no core until the
forward ended), so `overlap_pays()` turns it on only when torch leaves a core idle. `blocked_s` adds up
the time the engine waited for masks. A mask that allows no token at all (a parser that failed) is
reported by `empty_rows`, so the engine can end that request instead of sampling from nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from ulm.guided.constraint import Constraint


def overlap_pays() -> bool:
    """Whether a core is left idle by torch's threads for the mask worker during a forward."""
    return torch.get_num_threads() < (os.cpu_count() or 1)


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
        self.blocked_s = 0.0  # seconds the engine spent waiting for masks
        self._executor: Any = llguidance.LLExecutor(num_threads=1)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ulm-masks")

    def begin(self, constraints: Sequence[Constraint | None]) -> Pending:
        out = torch.full((len(constraints), self.words), -1, dtype=torch.int32)  # [rows, W]: all allowed
        work = [(c.matcher, i) for i, c in enumerate(constraints) if c is not None]
        args = (work, out.data_ptr(), 4 * self.words, len(constraints))
        if self.overlap:
            return Pending(out, self._thread.submit(self._executor.unsafe_compute_mask_ptr, *args))
        done: Future[None] = Future()
        t0 = time.perf_counter()
        self._executor.unsafe_compute_mask_ptr(*args)
        self.blocked_s += time.perf_counter() - t0
        done.set_result(None)
        return Pending(out, done)

    def take(self, pending: Pending) -> torch.Tensor:
        t0 = time.perf_counter()
        pending.done.result()
        self.blocked_s += time.perf_counter() - t0
        return pending.out

    @staticmethod
    def empty_rows(mask: torch.Tensor) -> list[int]:
        """Rows of `mask` [rows, W] that allow no token."""
        return torch.nonzero((mask == 0).all(dim=1)).flatten().tolist()

    def close(self) -> None:
        self._thread.shutdown(wait=False)
