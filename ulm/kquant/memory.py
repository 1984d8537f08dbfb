"""Weight buffers in transparent huge pages: `huge_pages_buffer(nbytes)`.

Decoding streams every weight once a token, so the cost is memory bandwidth, and with 4 KiB pages a good
part of it goes to TLB misses: on this 2-core machine two threads read a 1 GiB buffer at ~10 GB/s from
4 KiB pages and at 18-28 GB/s from 2 MiB ones, in the same minute (load ~5). Linux gives anonymous memory
huge pages only where asked (`/sys/kernel/mm/transparent_hugepage/enabled` is usually `madvise`), and torch
does not ask, so the block-quant weights live in a private anonymous mapping advised MADV_HUGEPAGE and
aligned to 2 MiB. Elsewhere (no madvise, another OS) it is a plain tensor.
"""

from __future__ import annotations

import mmap

import torch
from torch import Tensor

HUGE_PAGE = 2 << 20


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
