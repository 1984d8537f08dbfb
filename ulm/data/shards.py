"""ShardWriter: one split's token stream written as raw little-endian shards of at most `shard_tokens`
tokens (`{split}-{k:06d}.bin`), an optional uint8 mask beside each (`.mask`), and the document index
(`{split}.idx`, uint64 offsets of each document's first token, then the total).

Documents may straddle shards (the reader stitches them). Files are written through a `.tmp` name and
renamed when complete; each shard's sha256 goes into the manifest. Nothing here depends on the time or
the machine, so the same documents give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


@dataclass
class ShardInfo:
    """One finished shard, as the manifest records it."""

    file: str
    tokens: int
    sha256: str
    mask_file: str | None = None
    mask_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "tokens": self.tokens, "sha256": self.sha256}
        if self.mask_file is not None:
            out.update(mask_file=self.mask_file, mask_sha256=self.mask_sha256)
        return out


@dataclass
class _Open:
    name: str
    fh: BinaryIO
    digest: Any
    tokens: int = 0
    mask_fh: BinaryIO | None = None
    mask_digest: Any = None


@dataclass
class ShardWriter:
    """Appends documents to a split's shards; `close()` returns the shard list and writes the index."""

    out: Path
    split: str
    dtype: np.dtype
    shard_tokens: int
    with_mask: bool
    shards: list[ShardInfo] = field(default_factory=list)
    doc_starts: list[int] = field(default_factory=lambda: [0])
    _open: _Open | None = None

    @property
    def tokens(self) -> int:
        return self.doc_starts[-1]

    def add(self, ids: list[int], mask: list[int] | None = None) -> None:
        """Append one document's tokens (and its mask: required when the writer has masks)."""
        tokens = np.asarray(ids, dtype=self.dtype)
        mask_arr = np.asarray(mask if mask is not None else np.ones(len(ids)), dtype=np.uint8)
        done = 0
        while done < len(tokens):
            shard = self._open or self._start()
            take = min(len(tokens) - done, self.shard_tokens - shard.tokens)
            self._write(shard, tokens[done:done + take], mask_arr[done:done + take])
            done += take
            if shard.tokens == self.shard_tokens:
                self._finish()
        self.doc_starts.append(self.tokens + len(tokens))

    def _start(self) -> _Open:
        name = f"{self.split}-{len(self.shards):06d}"
        shard = _Open(name, open(self.out / f"{name}.bin.tmp", "wb"), hashlib.sha256())  # noqa: SIM115 (see _finish)
        if self.with_mask:
            shard.mask_fh = open(self.out / f"{name}.mask.tmp", "wb")  # noqa: SIM115 (closed in _finish)
            shard.mask_digest = hashlib.sha256()
        self._open = shard
        return shard

    @staticmethod
    def _write(shard: _Open, tokens: np.ndarray, mask: np.ndarray) -> None:
        data = tokens.tobytes()
        shard.fh.write(data)
        shard.digest.update(data)
        shard.tokens += len(tokens)
        if shard.mask_fh is not None:
            shard.mask_fh.write(mask.tobytes())
            shard.mask_digest.update(mask.tobytes())

    def _finish(self) -> None:
        shard, self._open = self._open, None
        assert shard is not None
        info = ShardInfo(f"{shard.name}.bin", shard.tokens, shard.digest.hexdigest())
        _close_into(shard.fh, self.out / info.file)
        if shard.mask_fh is not None:
            info.mask_file, info.mask_sha256 = f"{shard.name}.mask", shard.mask_digest.hexdigest()
            _close_into(shard.mask_fh, self.out / info.mask_file)
        self.shards.append(info)

    def close(self) -> list[ShardInfo]:
        """Finish the last shard and write the document index."""
        if self._open is not None:
            self._finish()
        index = self.out / f"{self.split}.idx"
        with open(f"{index}.tmp", "wb") as fh:
            fh.write(np.asarray(self.doc_starts, dtype="<u8").tobytes())
        _close_into(None, index)
        return self.shards

    def abort(self) -> None:
        """Close and remove the shard being written (after an error)."""
        if self._open is not None:
            for fh in (self._open.fh, self._open.mask_fh):
                if fh is not None:
                    fh.close()
                    Path(fh.name).unlink(missing_ok=True)
            self._open = None


def _close_into(fh: BinaryIO | None, target: Path) -> None:
    """Flush and close `fh` (the file `target`.tmp), then rename it to `target`."""
    if fh is not None:
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
    os.replace(f"{target}.tmp", target)
