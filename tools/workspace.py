"""Which paths an edit may touch, and reading them safely.

A path is resolved against the workspace root with every symlink followed (`os.path.realpath`); the
result must lie inside the root's own real path, so `../x`, `/etc/hosts` and `sub/link/x` with `link`
pointing outside are refused ("outside the workspace"). A symlink inside the root is followed and its
target is edited; the link itself stays. Refused as targets: anything but a regular file (a FIFO is
never opened in a blocking way, devices and directories are refused), files with several hard links
(cb replaces a file by rename, which would silently split them), binary and oversized files
(`tools.textfile`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tools.textfile import MAX_FILE_BYTES


class Refused(ValueError):
    """The path may not be edited; the message says why, starting with the path."""


@dataclass(frozen=True)
class Target:
    """A resolved edit target: the name the proposal used, the real path, whether it exists."""

    shown: str
    real: Path
    exists: bool


def resolve(root: Path, name: str) -> Target:
    """Resolve `name` (relative to `root`, or absolute) to a real path inside the root; raises Refused."""
    if "\x00" in name:
        raise Refused(f"{name!r}: the path contains a NUL byte")
    if not name.strip():
        raise Refused("an edit names no path")
    base = os.path.realpath(root)
    joined = os.path.join(base, os.path.expanduser(name))  # an absolute name replaces the base
    real = os.path.realpath(joined)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise Refused(f"{name}: outside the workspace root {base}")
    if real == base:
        raise Refused(f"{name}: is the workspace root itself, not a file")
    exists = os.path.lexists(real) or os.path.lexists(joined)
    return Target(name, Path(real), exists)


def check_regular(target: Target, st: os.stat_result) -> None:
    """Refuse anything but a regular file with one link."""
    if stat.S_ISDIR(st.st_mode):
        raise Refused(f"{target.shown}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{target.shown}: is not a regular file (a FIFO, socket or device); cb edits only files")
    if st.st_nlink > 1:
        raise Refused(f"{target.shown}: has {st.st_nlink} hard links; replacing it would split them, so cb refuses")


def read_target(target: Target) -> tuple[bytes, os.stat_result]:
    """The file's bytes and stat; raises Refused for non-regular files (a FIFO is opened non-blocking)."""
    try:
        fd = os.open(target.real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Refused(f"{target.shown}: does not exist") from None
    except OSError as exc:
        raise Refused(f"{target.shown}: cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        check_regular(target, st)
        if st.st_size > MAX_FILE_BYTES:
            raise Refused(f"{target.shown}: is {st.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for edits")
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)
