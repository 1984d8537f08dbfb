"""The publisher's per-sender sequence number, persistent and safe across concurrent `cb copy` runs.

The subscriber refuses a message whose sequence number is not above the last one it applied from
that sender, so the number must only grow: it lives in a file in the state dir, incremented by one
under an exclusive `flock` (so the subscriber can count the clips it missed). A missing file starts
from the current time in ms, not 0, so the number keeps growing even if the state dir is wiped while
the sender name (CB_CLIP_SENDER) is kept.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cb import paths


def sequence_file(sender: str) -> Path:
    return paths.state_dir() / "clip" / f"seq-{sender}"


def next_seq(sender: str, path: Path | None = None) -> int:
    """Reserve and return the next sequence number for `sender` (kept in `path`, default in the state dir)."""
    import fcntl  # Unix only; imported here so the listener side never needs it

    path = path or sequence_file(sender)
    paths.ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            seq = int(os.pread(fd, 64, 0).strip()) + 1
        except ValueError:
            seq = time.time_ns() // 1_000_000
        # Fixed width, rewritten in place: no truncate or rename on the hot path (those cost ms here).
        os.pwrite(fd, f"{seq:020d}\n".encode("ascii"), 0)
        return seq
    finally:
        os.close(fd)
