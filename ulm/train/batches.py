"""Which tokens each rank trains on at each step, decided by the seed and the step alone.

A split's token stream is cut into windows of seq_len + 1 tokens at stride seq_len (window w covers tokens
w·T .. w·T + T; the model reads the first T and predicts the last T). Documents are packed: a window may
span several, which the separator token delimits.

Training: the windows are shuffled per epoch (`numpy.random.default_rng([seed, epoch])`), and global
sequence k (k = 0, 1, 2, ... over the whole run) is window order[epoch][k mod n] with epoch = k // n. Step s
takes global sequences [s·B, (s+1)·B); rank r of W takes the contiguous slice [r·B/W, (r+1)·B/W) of those,
cut into micro-batches. So the data position is one number (sequences consumed), the same for any W.

Validation: the first `n` windows of the val split, in order; rank r takes every W-th one from r.

Targets the model is not trained on (outside the dataset's mask, when `use_mask`) are IGNORE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ulm.data.dataset import TokenSplit
from ulm.data.errors import DataError

IGNORE = -100

MicroBatch = tuple[torch.Tensor, torch.Tensor]  # ids LongTensor [b, T], targets LongTensor [b, T]


class WindowSampler:
    """Deterministic windows of one split (see the module docstring)."""

    def __init__(self, split: TokenSplit, seq_len: int, seed: int = 0, use_mask: bool = False) -> None:
        self.split, self.seq_len, self.seed, self.use_mask = split, seq_len, seed, use_mask
        self.n_windows = max(0, (split.n_tokens - 1) // seq_len)
        self._epoch, self._order = -1, np.zeros(0, dtype=np.int64)

    def require(self, what: str) -> None:
        """DataError when the split holds no full window."""
        if self.n_windows == 0:
            raise DataError(f"the {self.split.name} split has {self.split.n_tokens} tokens, fewer than seq_len + 1 = "
                            f"{self.seq_len + 1} ({what}); use more data or a shorter --seq-len")

    def window(self, k: int) -> int:
        """The window of global training sequence k."""
        epoch, i = divmod(k, self.n_windows)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
        return int(self._order[i])

    def batch(self, windows: Sequence[int]) -> MicroBatch:
        """ids and targets [len(windows), T] of these windows."""
        T = self.seq_len
        ids = np.empty((len(windows), T), dtype=np.int64)
        targets = np.empty((len(windows), T), dtype=np.int64)
        for row, w in enumerate(windows):
            tokens = self.split.tokens(w * T, T + 1)
            ids[row], targets[row] = tokens[:-1], tokens[1:]
            if self.use_mask:
                targets[row][~self.split.mask(w * T + 1, T)] = IGNORE
        return torch.from_numpy(ids), torch.from_numpy(targets)

    def train_step(self, first: int, batch_size: int, micro_batch: int, rank: int, world: int) -> list[MicroBatch]:
        """Rank `rank`'s micro-batches of the global batch of sequences first .. first + batch_size - 1."""
        per_rank = batch_size // world
        start = first + rank * per_rank
        windows = [self.window(start + j) for j in range(per_rank)]
        return [self.batch(windows[i:i + micro_batch]) for i in range(0, per_rank, micro_batch)]

    def eval_batches(self, n: int, micro_batch: int, rank: int, world: int) -> list[MicroBatch]:
        """Rank `rank`'s share of the first n windows (fewer when the split is short)."""
        windows = list(range(rank, min(n, self.n_windows), world))
        return [self.batch(windows[i:i + micro_batch]) for i in range(0, len(windows), micro_batch)]
