"""Weight buffers in transparent huge pages (`huge_pages_buffer(nbytes)`), and the release of a read-only file
mapping's pages once their bytes have been used (`release_pages(view)`).

Decoding streams every weight once a token, so the cost is memory bandwidth, and with 4 KiB pages a good
part of it goes to TLB misses: on this 2-core machine two threads read a 1 GiB buffer at ~10 GB/s from
4 KiB pages and at 18-28 GB/s from 2 MiB ones, in the same minute (load ~5). Linux gives anonymous memory
huge pages only where asked (`/sys/kernel/mm/transparent_hugepage/enabled` is usually `madvise`), and torch
does not ask, so the block-quant weights live in a private anonymous mapping advised MADV_HUGEPAGE and
aligned to 2 MiB. Elsewhere (no madvise, another OS) it is a plain tensor.

A GGUF's blocks are read once, through a private file mapping, to be repacked; each page read stays in the
process's resident set (and its peak, ru_maxrss) for as long as the mapping lives, which for the 1.5B model
would add the whole 1.1 GB file to its 1.1 GB of repacked tiles. `release_pages` drops a range's pages from
the mapping (MADV_DONTNEED: the file's data stays in the page cache, and a later read maps it back in).
"""

from __future__ import annotations

import ctypes
import functools
import mmap

import numpy as np
import torch
from torch import Tensor

HUGE_PAGE = 2 << 20
_MADV_DONTNEED = 4  # Linux


def huge_pages_buffer(nbytes: int) -> Tensor:
    """An uninitialised uint8 tensor [nbytes] backed by transparent huge pages where the OS has them (the
    tensor keeps its mapping alive). Only its whole 2 MiB pages are advised, so a buffer's tail never
    holds a mostly unused huge page (the resident size stays nbytes, rounded to 4 KiB): one buffer for
    many tensors (an arena of the whole model) wastes least."""
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    private = getattr(mmap, "MAP_PRIVATE", None)
    if nbytes < HUGE_PAGE or advise is None or private is None:
        return torch.empty(nbytes, dtype=torch.uint8)
    region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=private | mmap.MAP_ANONYMOUS)  # private: not shmem
    whole = torch.frombuffer(region, dtype=torch.uint8)  # holds a reference to the mapping
    start = -whole.data_ptr() % HUGE_PAGE
    region.madvise(advise, start, nbytes // HUGE_PAGE * HUGE_PAGE)
    return whole[start:start + nbytes]


@functools.cache
def _madvise() -> ctypes._CFuncPtr | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
    return fn


def release_pages(view: np.ndarray) -> None:
    """Drop the pages under `view` from this process's resident set: the whole pages it touches, so a
    neighbour's first or last page may go too. Only for views into a private file mapping that is never
    written (a GGUF file's or pieces' mapping, `GGUFFile.file_backed`): its pages are read back in from the
    file on use, nothing is lost. Anonymous or heap memory would read back as zeros: never pass it. Where
    madvise is unavailable (another OS) nothing happens."""
    madvise = _madvise()
    if madvise is None or view.nbytes == 0 or not hasattr(mmap, "MADV_DONTNEED"):
        return
    page = mmap.PAGESIZE
    start = view.ctypes.data // page * page
    end = -(-(view.ctypes.data + view.nbytes) // page) * page
    madvise(start, end - start, _MADV_DONTNEED)
