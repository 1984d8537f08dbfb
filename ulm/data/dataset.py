"""A built dataset, memory-mapped for training: `open_dataset(DIR)` → Dataset (.manifest, .train, .val).

A `TokenSplit` is one split's token stream, its shards stitched together: `tokens(start, n)` and
`mask(start, n)` copy out int64 / bool arrays for positions start..start+n-1 of the stream (a read may
cross shard boundaries), `doc_starts` holds the document offsets. Nothing is read until asked for.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ulm.data.errors import DataError
from ulm.data.manifest import TOKENIZER_DIR, check_files, read_manifest


class TokenSplit:
    """One split of a dataset: its tokens (and mask) as one stream over the shards."""

    def __init__(self, directory: Path, manifest: dict[str, Any], split: str) -> None:
        entry = manifest["splits"][split]
        dtype = np.dtype(manifest["token_dtype"])
        self.name = split
        self.n_tokens: int = entry["tokens"]
        self.has_mask: bool = bool(manifest.get("has_mask"))
        self._tokens = [_map(directory / s["file"], dtype) for s in entry["shards"]]
        self._masks = [_map(directory / s["mask_file"], np.dtype(np.uint8)) for s in entry["shards"]] \
            if self.has_mask else []
        self._ends = np.cumsum([len(t) for t in self._tokens]).tolist()
        self.doc_starts = np.fromfile(directory / entry["index"], dtype="<u8")

    def _read(self, parts: list[np.ndarray], start: int, n: int) -> np.ndarray:
        if start < 0 or n < 0 or start + n > self.n_tokens:
            raise IndexError(f"{self.name}: tokens {start}..{start + n} outside 0..{self.n_tokens}")
        pieces = []
        k = bisect.bisect_right(self._ends, start)
        while n > 0:
            base = self._ends[k - 1] if k else 0
            take = min(n, self._ends[k] - start)
            pieces.append(parts[k][start - base:start - base + take])
            start, n, k = start + take, n - take, k + 1
        return np.concatenate(pieces) if len(pieces) != 1 else pieces[0]

    def tokens(self, start: int, n: int) -> np.ndarray:
        """Token ids start..start+n-1 as int64 [n]."""
        return self._read(self._tokens, start, n).astype(np.int64)

    def mask(self, start: int, n: int) -> np.ndarray:
        """Trained-on flags start..start+n-1 as bool [n] (all True when the dataset has no mask)."""
        if not self.has_mask:
            return np.ones(n, dtype=bool)
        return self._read(self._masks, start, n).astype(bool)


def _map(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


@dataclass
class Dataset:
    """A built dataset: its manifest, splits, and tokenizer directory."""

    directory: Path
    manifest: dict[str, Any]
    train: TokenSplit
    val: TokenSplit

    @property
    def tokenizer_dir(self) -> Path:
        return self.directory / self.manifest["tokenizer"].get("dir", TOKENIZER_DIR)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])


def open_dataset(directory: Path | str) -> Dataset:
    """Open a dataset built by `ulm data build`; DataError when it is missing, of another format or incomplete."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    try:
        check_files(directory, manifest)
        return Dataset(directory, manifest, TokenSplit(directory, manifest, "train"),
                       TokenSplit(directory, manifest, "val"))
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise DataError(f"{directory}: damaged dataset ({type(e).__name__}: {e}); rebuild it") from None
