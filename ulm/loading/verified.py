"""The bytes of a GGUF carried in pieces, checked against its pinned hash once and then trusted.

`mapped_source(source)` returns the pieces mapped back to back (`ulm.loading.parts.map_parts`), after making
sure they are the pinned file: the first time, every byte is hashed (with progress: ~1.5 s for the 1.1 GB
model here) and a stamp is written to `<model cache>/verified/<sha256>.json` holding each piece's path,
size, mtime and inode; later loads compare the stamp with `stat` alone. A replaced or touched piece is
hashed again; a mismatch raises `HashMismatchError` and writes nothing. Where the pieces cannot be mapped
(a piece of odd size), they are joined once into `<model cache>/joined/<name>-<sha256>.gguf`, which is
checked and then mapped.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from cb.paths import ensure_dir, model_cache_dir
from ulm import progress
from ulm.loading.parts import PartsNotMappable, join_parts, map_parts, verify_parts
from ulm.registry import ModelSource


def _identity(parts: tuple[Path, ...]) -> list[list[object]]:
    out: list[list[object]] = []
    for p in parts:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns, st.st_ino])
    return out


def stamp_path(sha256: str) -> Path:
    return model_cache_dir() / "verified" / f"{sha256}.json"


def is_verified(source: ModelSource) -> bool:
    """True when the pieces are exactly those hashed last time (no hashing now)."""
    if not source.parts or source.sha256 is None:
        return False
    try:
        stamp = json.loads(stamp_path(source.sha256).read_text(encoding="utf-8"))
        return bool(stamp.get("parts") == _identity(source.parts))
    except (OSError, ValueError):
        return False


def ensure_verified(source: ModelSource) -> None:
    """Hash the pieces unless the stamp says they were; HashMismatchError when they are not the pinned file."""
    if is_verified(source) or source.sha256 is None or source.size is None:
        return
    with progress.stage(f"checking {source.name}", total=source.size, unit="B") as step:
        verify_parts(source.parts, source.size, source.sha256, lambda done, _total: step.update(done))
    target = stamp_path(source.sha256)
    ensure_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=".stamp-", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"name": source.name, "size": source.size, "parts": _identity(source.parts)}, f)
    os.replace(tmp, target)


def joined_path(source: ModelSource) -> Path:
    assert source.sha256 is not None
    return model_cache_dir() / "joined" / f"{source.name}-{source.sha256[:16]}.gguf"


def join_source(source: ModelSource, out: Path | None = None) -> Path:
    """The pieces joined into one verified file (default: the model cache's copy); resumable."""
    assert source.size is not None and source.sha256 is not None
    target = out or joined_path(source)
    with progress.stage(f"joining {source.name}", total=source.size, unit="B") as step:
        return join_parts(source.parts, target, source.size, source.sha256, lambda done, _t: step.update(done))


def mapped_source(source: ModelSource) -> np.ndarray:
    """The model's bytes, uint8 [size], verified; see the module docstring."""
    try:
        data = map_parts(source.parts, source.size)
    except PartsNotMappable:
        return np.memmap(join_source(source), mode="c")
    ensure_verified(source)
    return data
