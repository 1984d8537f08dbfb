"""Crash-safe file replacement and the locks that keep two writers from losing an update.

`atomic_write` writes a temp file in the target's own directory (`.NAME.cb-XXXXXXXX.tmp`), fsyncs it,
gives it the mode (and, when run as root, the owner) to keep, renames it over the target and fsyncs the
directory: after a crash at any point the target is exactly the old or exactly the new bytes. A temp file
left by a killed writer is clearly named and is removed by the next write to the same file
(`remove_stale_temps`, run while holding the directory lock, so it never races a live writer).

`locked(dirs)` takes an exclusive `flock` on each directory (sorted, so two batches cannot deadlock);
every cb writer holds it from its last check of the file's bytes to the rename, so a second cb sees the
first one's result and refuses as stale instead of overwriting it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.cb-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def remove_stale_temps(target: Path) -> None:
    """Remove temp files a killed cb left next to `target` (call with the directory locked)."""
    prefix = f".{target.name}.cb-"
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX) and len(entry.name) == len(
                    prefix) + 8 + len(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Replace (or create) `target` with `data` and permission bits `mode`, all or nothing."""
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, *owner)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def remove_file(target: Path) -> None:
    """Delete `target` and make the deletion durable."""
    os.unlink(target)
    fsync_dir(target.parent)


@contextlib.contextmanager
def locked(dirs: Iterable[Path]) -> Iterator[None]:
    """Hold an exclusive flock on every directory in `dirs` (taken in sorted order, released on exit)."""
    fds: list[int] = []
    try:
        for d in sorted({Path(d) for d in dirs}):
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in reversed(fds):
            os.close(fd)  # closing the last descriptor releases its flock
