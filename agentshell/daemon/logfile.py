"""A tab's output log: raw bytes appended to `<id>.log`, rotated to `<id>.log.1` ... at a size cap.

Writes go through a buffered file and are flushed by the daemon on a timer and when the tab ends, so a
flooding tab costs one write call per 64 KiB, not per read.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

PIECE = 64 << 10  # bytes written between two checks of the size cap


class RotatingLog:
    def __init__(self, path: Path, max_bytes: int = 8 << 20, backups: int = 2) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: BinaryIO | None = None
        self._size = 0

    def _open(self) -> BinaryIO:
        if self._file is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._file = os.fdopen(fd, "ab", buffering=64 << 10)
            self._size = self._file.tell()
        return self._file

    def write(self, data: bytes) -> None:
        """Append; a file that reached the cap is rotated first, so the newest file always exists. The cap is
        checked every PIECE bytes, so no file passes it by more than that, however much one wake-up of the
        daemon read (several PTY reads are joined into one write)."""
        view = memoryview(data)
        for start in range(0, len(view), PIECE):
            f = self._open()
            if self._size >= self.max_bytes:
                self.rotate()
                f = self._open()
            piece = view[start : start + PIECE]
            f.write(piece)
            self._size += len(piece)

    def rotate(self) -> None:
        self.close()
        for n in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            newer = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
            if newer.exists():
                os.replace(newer, older)

    def flush(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def paths(self) -> list[Path]:
        """Existing log files, oldest first."""
        names = [self.path.with_name(f"{self.path.name}.{n}") for n in range(self.backups, 0, -1)] + [self.path]
        return [p for p in names if p.exists()]

    def remove(self) -> None:
        self.close()
        for p in self.paths():
            with contextlib.suppress(OSError):
                p.unlink()

    def read_tail(self, n: int) -> bytes:
        """The last `n` bytes logged (across the newest files), to refill a ring after a restart."""
        self.flush()
        out = b""
        for p in reversed(self.paths()):
            with contextlib.suppress(OSError), p.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(size - (n - len(out)), 0))
                out = f.read() + out
            if len(out) >= n:
                break
        return out[-n:] if n else b""
