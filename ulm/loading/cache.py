"""Convert a GGUF once, keep the result in the model cache, and load it memory-mapped afterwards.

Opening the embedded GGUF with gguf.GGUFReader and dequantising it takes seconds; the converted copy
(config.json + model.safetensors in the model's fused layout, see `ulm.model.fuse_state_dict`; fp32 for
quantised tensors) maps in milliseconds, and `build_model` uses the mapped tensors without copying.
Layout: `cb.paths.model_cache_dir()/<fingerprint>/{config.json, model.safetensors, source.json}`.

The fingerprint is sha256 over: the converter version (`CACHE_VERSION`), the resolved source path, its
size and mtime (ns), and the bytes of its first and last MiB; the first 24 hex digits name the dir. So a
replaced, rewritten or touched source file gets a new entry (and the stale one of the same path is
removed), and a new converter never reads an old layout.

A conversion is written into a temp dir next to the cache and renamed into place: a crash leaves a
temp dir (removed by the next conversion), never a half entry. HF directories are not converted:
their safetensors are memory-mapped directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from cb.paths import ensure_dir, model_cache_dir
from ulm.config import ModelConfig
from ulm.errors import ModelLoadError
from ulm.loading.gguf import read_gguf
from ulm.loading.hf import read_hf, read_safetensors
from ulm.model import fuse_state_dict
from ulm.registry import ModelSource

CACHE_VERSION = 1
MIB = 1 << 20
FILES = ("config.json", "model.safetensors", "source.json")


def fingerprint(path: Path) -> str:
    """The cache key of a source file (see the module docstring)."""
    resolved = path.resolve()
    st = resolved.stat()
    h = hashlib.sha256(f"v{CACHE_VERSION}\0{resolved}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    with resolved.open("rb") as f:
        h.update(f.read(MIB))
        if st.st_size > MIB:
            f.seek(max(MIB, st.st_size - MIB))
            h.update(f.read(MIB))
    return h.hexdigest()[:24]


def cache_entry(path: Path) -> Path:
    """Where the converted copy of `path` lives (whether or not it exists yet)."""
    return model_cache_dir() / fingerprint(path)


def is_cached(path: Path) -> bool:
    """True when a complete converted copy of `path` is in the cache."""
    entry = cache_entry(path)
    return all((entry / name).is_file() for name in FILES)


def convert_gguf(path: Path) -> Path:
    """The cache entry of a GGUF file, converting it first when missing."""
    entry = cache_entry(path)
    if all((entry / name).is_file() for name in FILES):
        return entry
    config, canonical = read_gguf(path)
    state = fuse_state_dict(config, canonical)
    root = ensure_dir(model_cache_dir())
    _remove_stale(root, path.resolve())
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=root))
    try:
        _write_entry(tmp, config, state, path.resolve())
        try:
            os.rename(tmp, entry)
        except OSError:
            if not all((entry / name).is_file() for name in FILES):  # not another process's finished entry
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def _write_entry(tmp: Path, config: ModelConfig, state: dict[str, torch.Tensor], source: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    meta = {"source": str(source), "cache_version": CACHE_VERSION, "size": source.stat().st_size}
    (tmp / "source.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    for f in tmp.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())


def _remove_stale(root: Path, source: Path) -> None:
    """Drop entries converted from an older version of the same source file, and abandoned temp dirs."""
    for entry in root.iterdir():
        if entry.name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < time.time() - 3600:  # untouched for an hour: left by a crashed run
                    shutil.rmtree(entry, ignore_errors=True)
            continue
        meta = entry / "source.json"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(meta.read_text(encoding="utf-8")).get("source") == str(source):
                shutil.rmtree(entry, ignore_errors=True)


def read_entry(entry: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, state dict) of a cache entry, memory-mapped."""
    try:
        config = ModelConfig.from_dict(json.loads((entry / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as e:
        raise ModelLoadError(f"{entry}: damaged model cache entry ({e}); delete it and load again") from None
    return config, read_safetensors(entry / "model.safetensors")


def load_checkpoint(source: ModelSource, dtype: torch.dtype | None = torch.float32,
                    use_cache: bool = True) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, state dict for `build_model`) of a resolved model source, floating tensors cast to `dtype`
    (None: as stored). The state dict is in the model's fused layout (`ulm.model.to_canonical` on the
    built model gives canonical names back). GGUF files go through the conversion cache unless
    `use_cache` is False."""
    if source.kind == "gguf":
        if use_cache:
            config, state = read_entry(convert_gguf(source.path))
        else:
            config, state = read_gguf(source.path)
    elif source.kind == "hf":
        config, state = read_hf(source.path)
    else:
        raise ModelLoadError(f"{source.path}: unknown checkpoint kind '{source.kind}'")
    return config, fuse_state_dict(config, state, dtype)
