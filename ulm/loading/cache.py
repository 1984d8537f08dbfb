"""The model cache: one entry per model source (a GGUF file, or a GGUF carried in pieces), holding everything
derived from it.

Opening the embedded GGUF with gguf.GGUFReader and dequantising it takes seconds, building its tokenizer
from the metadata ~6 s, and the fast mode's packing more: each is done once and kept here. Layout:

    cb.paths.model_cache_dir()/<fingerprint>/
        source.json                     the source (path, pieces, pinned size and hash), the cache version:
                                        written first, it makes the dir an entry
        config.json, model.safetensors  the GGUF converted to the model's fused layout (`ulm.loading.checkpoint`)
        fast-<scheme>-v<N>.safetensors  the fast mode's converted tensors (`ulm.fast.convert`)
        fast-kquant-v<L>.<N>.tiles      a block-quant model's repacked weights (`ulm.fast.blocks`)
        tokenizer/                      the tokenizer files built from the GGUF's metadata (`ulm.tokenizer`)

The fingerprint is sha256 over the cache version (`CACHE_VERSION`) and, for a file, its resolved path, size,
mtime (ns) and the bytes of its first and last MiB; for a GGUF in pieces (`ModelSource.parts`), its pinned
size and sha256 (the pieces' bytes are checked against them by `ulm.loading.verified`). The first 24 hex
digits name the entry. So a replaced, rewritten or touched file gets a new entry, a new cache layout never
reads an old one, and the entry of the same source path (a file, or the first piece) under another
fingerprint is stale: removed when the new one is made. `verified/` and `joined/` in the cache root belong to
`ulm.loading.verified` (the pieces' hash stamps, joined copies): they are not entries, and `scan` skips them.

An entry is made as a temp dir holding source.json, renamed into place; every artefact is written into a temp
dir inside the entry and renamed into place (`save_artefact`): a crash leaves a `.tmp-*` name (removed by the
next entry made, or `ulm cache prune`, once untouched for an hour), never a half artefact. Readers treat a
damaged artefact as missing, so it is rebuilt. Each read records the entry's last use (its mtime).

`scan()` describes every item of the cache root for `ulm cache` (source, state, contents, size, last use),
`prunable` picks what `ulm cache prune` removes and `remove` deletes one. HF directories are read where they
are: nothing of theirs is cached. Stdlib at import (safetensors only inside the functions that read and write
tensors), so `ulm cache` starts quickly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cb.paths import ensure_dir, model_cache_dir
from ulm.config import ModelConfig
from ulm.errors import ModelLoadError
from ulm.registry import ModelSource

if TYPE_CHECKING:
    import torch

CACHE_VERSION = 2  # 2: one entry per source file (the tokenizer moved in from tokenizers/<key>/)
MIB = 1 << 20
SOURCE, CONFIG, WEIGHTS = "source.json", "config.json", "model.safetensors"
TEMP = ".tmp-"
NOT_ENTRIES = ("verified", "joined")  # dirs of the cache root that ulm.loading.verified keeps
ABANDONED_S = 3600  # a temp name untouched this long was left by a crashed run


def fingerprint(source: ModelSource) -> str:
    """The cache key of a model source (see the module docstring)."""
    if source.parts:
        return hashlib.sha256(f"v{CACHE_VERSION}\0parts\0{source.size}\0{source.sha256}".encode()).hexdigest()[:24]
    resolved = source.path.resolve()
    st = resolved.stat()
    h = hashlib.sha256(f"v{CACHE_VERSION}\0{resolved}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    with resolved.open("rb") as f:
        h.update(f.read(MIB))
        if st.st_size > MIB:
            f.seek(max(MIB, st.st_size - MIB))
            h.update(f.read(MIB))
    return h.hexdigest()[:24]


def entry_dir(source: ModelSource) -> Path:
    """Where the entry of `source` lives (whether or not it exists yet)."""
    return model_cache_dir() / fingerprint(source)


def artefact(source: ModelSource, name: str) -> Path | None:
    """The artefact `name` of `source`'s entry when it is there (its use recorded), else None."""
    entry = entry_dir(source)
    target = entry / name
    if not target.exists():
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)
    return target


def entry_size(source: ModelSource) -> int:
    """Bytes on disk in `source`'s entry (0 when there is none)."""
    entry = entry_dir(source)
    return sum(p.lstat().st_size for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else 0


def save_artefact(source: ModelSource, name: str, write: Callable[[Path], None]) -> Path:
    """Make the artefact `name` of `source`'s entry (a file or a dir) by `write(where)`, then rename it into
    place, replacing one that is there (a damaged one); the entry is made first when missing."""
    entry = _open_entry(source)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP}{name}-", dir=entry))
    target = entry / name
    try:
        write(tmp / name)
        _fsync_tree(tmp / name)
        if target.is_dir():  # a dir cannot be renamed over a full one: move the old one aside first
            os.rename(target, tmp / "old")
        os.replace(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _open_entry(source: ModelSource) -> Path:
    """`source`'s entry, made (with its source.json) when missing; stale entries of the same path are removed then."""
    entry = entry_dir(source)
    if (entry / SOURCE).is_file():
        return entry
    root = ensure_dir(model_cache_dir())
    path = source.path.resolve()
    _remove_stale(root, path, keep=entry.name)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP}{entry.name}-", dir=root))
    try:
        meta = {"source": str(path), "name": source.name, "parts": [str(p.resolve()) for p in source.parts],
                "size": source.size if source.parts else path.stat().st_size, "sha256": source.sha256,
                "cache_version": CACHE_VERSION}
        (tmp / SOURCE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        _fsync_tree(tmp / SOURCE)
        if entry.is_dir():  # an entry whose source.json was lost: keep what it holds
            os.replace(tmp / SOURCE, entry / SOURCE)
        else:
            with contextlib.suppress(OSError):  # another process made it first: theirs is as good
                os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not (entry / SOURCE).is_file():
        raise OSError(f"{entry}: could not make the model cache entry")
    return entry


def _fsync_tree(path: Path) -> None:
    for f in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        with f.open("rb") as fh:
            os.fsync(fh.fileno())


def _remove_stale(root: Path, source: Path, keep: str) -> None:
    """Drop entries made from another version of the same source file, and abandoned temp dirs."""
    for item in scan(root, check_sources=False):
        abandoned = item.state == "temp" and item.idle_s > ABANDONED_S
        if abandoned or (item.source == str(source) and item.id != keep):
            with contextlib.suppress(OSError):  # in use elsewhere, or not ours to delete: harmless to keep
                remove(item.path)


# --- the converted checkpoint ---------------------------------------------------------------------


def is_cached(source: ModelSource) -> bool:
    """True when the converted checkpoint of GGUF `source` is in the cache."""
    entry = entry_dir(source)
    return (entry / CONFIG).is_file() and (entry / WEIGHTS).is_file()


def cached_config(source: ModelSource) -> ModelConfig | None:
    """The config of `source`'s converted checkpoint, None when missing or damaged."""
    config_file = artefact(source, CONFIG)
    if config_file is None:
        return None
    try:
        return ModelConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def load_tensors(source: ModelSource, name: str) -> dict[str, torch.Tensor] | None:
    """The safetensors artefact `name` of `source`'s entry, memory-mapped; None when missing or damaged."""
    file = artefact(source, name)
    if file is None:
        return None
    from ulm.loading.hf import read_safetensors

    try:
        return read_safetensors(file)
    except ModelLoadError:
        return None


def save_tensors(source: ModelSource, name: str, tensors: dict[str, torch.Tensor]) -> None:
    """Write `tensors` as the safetensors artefact `name` of `source`'s entry."""
    from safetensors.torch import save_file

    save_artefact(source, name, lambda where: save_file({k: v.contiguous() for k, v in tensors.items()}, str(where)))


# --- what `ulm cache` shows and removes -----------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One thing in the cache root. state: "current" (the source is there, unchanged), "source gone",
    "source changed" (or made by another cache version), "temp" (a conversion's, running or crashed), or
    "unknown" (no readable source.json: damaged, or left by an older cache layout)."""

    id: str
    path: Path
    source: str | None  # the source file's path (a GGUF in pieces: the first piece's)
    pieces: int  # how many pieces the source is carried in (0: one file)
    state: str
    holds: tuple[str, ...]
    size_bytes: int
    last_used: float  # the dir's mtime (unix time)

    @property
    def idle_s(self) -> float:
        return time.time() - self.last_used


def scan(root: Path | None = None, check_sources: bool = True) -> list[Item]:
    """Every item of the cache root, the last used first; `check_sources` fingerprints each source to tell
    current from changed (else every readable entry counts as current)."""
    root = model_cache_dir() if root is None else root
    items = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name not in NOT_ENTRIES:
            with contextlib.suppress(FileNotFoundError):  # removed while we looked
                items.append(_describe(path, check_sources))
    return sorted(items, key=lambda item: -item.last_used)


def _recorded_source(entry: Path) -> ModelSource | None:
    """The source an entry's source.json names, None when it is missing or unreadable."""
    try:
        meta = json.loads((entry / SOURCE).read_text(encoding="utf-8"))
        path = Path(meta["source"])
        parts = tuple(Path(p) for p in meta.get("parts") or ())
        name = str(meta.get("name") or path.stem)
        return ModelSource(name, "gguf", path, parts, meta.get("size"), meta.get("sha256"))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _describe(path: Path, check_sources: bool) -> Item:
    source = _recorded_source(path)
    if path.name.startswith(TEMP):
        state = "temp"
    elif source is None:
        state = "unknown"
    elif not check_sources:
        state = "current"
    elif not all(p.is_file() for p in source.parts or (source.path,)):
        state = "source gone"
    else:
        try:
            state = "current" if fingerprint(source) == path.name else "source changed"
        except OSError:
            state = "source gone"
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    children = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    recorded, pieces = (None, 0) if source is None else (str(source.path), len(source.parts))
    return Item(path.name, path, recorded, pieces, state, _holds(children), sum(f.lstat().st_size for f in files),
                path.lstat().st_mtime)


def _holds(names: list[str]) -> tuple[str, ...]:
    """What an entry's children are, by name: "weights", "fast-<scheme>-v<N>", "fast-kquant-v<L>.<N>",
    "tokenizer", "temp"."""
    out = ["weights"] if WEIGHTS in names and CONFIG in names else []
    out += [n.rpartition(".")[0] for n in names if n.startswith("fast-") and n.endswith((".safetensors", ".tiles"))]
    out += [n for n in names if n == "tokenizer"]
    out += ["temp"] if any(n.startswith(TEMP) for n in names) else []
    return tuple(out)


def remove(path: Path) -> None:
    """Delete one item of the cache root (an entry, a temp or unknown dir); OSError when it cannot."""
    with contextlib.suppress(FileNotFoundError):  # gone already (another process removed it)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def prunable(items: list[Item], everything: bool = False) -> list[Item]:
    """What `ulm cache prune` removes of `scan()`'s items: entries whose source is gone or changed, unknown
    dirs and temp names untouched for an hour (those inside current entries too); all of it with `everything`."""
    if everything:
        return list(items)
    out = []
    for item in items:
        if item.state in ("source gone", "source changed", "unknown"):
            out.append(item)
        elif item.state == "temp":
            out += [item] if item.idle_s > ABANDONED_S else []
        elif "temp" in item.holds:
            temps = (_describe(child, check_sources=False) for child in sorted(item.path.glob(f"{TEMP}*")))
            out += [t for t in temps if t.idle_s > ABANDONED_S]
    return out
