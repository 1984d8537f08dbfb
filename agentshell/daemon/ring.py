"""A byte-capped ring of a tab's output, addressed by absolute offsets (every byte the tab ever wrote).

The oldest bytes are dropped when the cap is passed; readers asking for them learn how many were dropped.
A bytearray with front deletion is amortised O(1) in CPython, so appends stay cheap under floods.
"""

from __future__ import annotations


class Ring:
    def __init__(self, cap: int, start: int = 0) -> None:
        self.cap = cap
        self.start = start  # absolute offset of buf[0]
        self.buf = bytearray()

    @property
    def end(self) -> int:
        return self.start + len(self.buf)

    @property
    def dropped(self) -> int:
        return self.start

    def append(self, data: bytes) -> None:
        self.buf += data
        excess = len(self.buf) - self.cap
        if excess > 0:
            del self.buf[:excess]
            self.start += excess

    def slice(self, since: int | None = None, tail: int | None = None,
              limit: int | None = None) -> tuple[bytes, int, int]:
        """(data, its start offset, bytes asked for but dropped). `since` wins over `tail`; `limit` caps the size
        from the start of the range."""
        if since is not None:
            begin = max(since, 0)
        elif tail is not None:
            begin = self.end - max(tail, 0)
        else:
            begin = self.start
        begin = min(begin, self.end)
        dropped = max(self.start - begin, 0)
        begin = max(begin, self.start)
        stop = self.end if limit is None else min(self.end, begin + limit)
        return bytes(self.buf[begin - self.start:stop - self.start]), begin, dropped
