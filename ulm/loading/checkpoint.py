"""A resolved model source → (config, state dict in the model's fused layout), GGUF files converted once.

A GGUF is read (gguf.py), fused (`ulm.model.fuse_state_dict`: q/k/v and gate/up stacked, fp32 for quantised
tensors) and kept in its model cache entry as config.json + model.safetensors (`ulm.loading.cache`); later
loads map that file in milliseconds, and `build_model` uses the mapped tensors without copying. An entry
that cannot be read back is converted again. HF directories are memory-mapped where they are (hf.py).

A model in pieces (the coder models, 0.5-1.5 B parameters) never gets such an fp32 copy: it would take
3.4-7 GB of disk for a file of 0.5-1.1 GB. Its exact mode (the reference) dequantises from the mapped
pieces at each load instead; its fast mode runs the blocks themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ulm.config import ModelConfig
from ulm.errors import ModelLoadError
from ulm.loading.cache import CONFIG, WEIGHTS, cached_config, entry_dir, load_tensors, save_artefact, save_tensors
from ulm.loading.gguf import read_gguf
from ulm.loading.hf import read_hf
from ulm.model import fuse_state_dict
from ulm.registry import ModelSource


def convert_gguf(source: ModelSource) -> Path:
    """The cache entry of a GGUF source, holding its converted checkpoint (converted first when missing or
    damaged)."""
    if _read_converted(source) is None:
        _convert(source)
    return entry_dir(source)


def load_checkpoint(source: ModelSource, dtype: torch.dtype | None = torch.float32,
                    use_cache: bool = True) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, state dict for `build_model`) of a resolved model source, floating tensors cast to `dtype`
    (None: as stored). The state dict is in the model's fused layout (`ulm.model.to_canonical` on the
    built model gives canonical names back). GGUF files go through the model cache unless `use_cache` is
    False."""
    if source.kind == "gguf":
        config, state = _cached(source) if use_cache and not source.parts else read_gguf(source)
    elif source.kind == "hf":
        config, state = read_hf(source.path)
    else:
        raise ModelLoadError(f"{source.path}: unknown checkpoint kind '{source.kind}'")
    return config, fuse_state_dict(config, state, dtype)


def _cached(source: ModelSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    cached = _read_converted(source)
    if cached is None:
        _convert(source)
        cached = _read_converted(source)
    if cached is None:
        raise ModelLoadError(f"{entry_dir(source)}: the model cache entry of {source.path} cannot be read back "
                             "after converting it (is the disk full?)")
    return cached


def _read_converted(source: ModelSource) -> tuple[ModelConfig, dict[str, torch.Tensor]] | None:
    """The converted checkpoint from the cache (memory-mapped), None when missing or damaged."""
    config = cached_config(source)
    state = None if config is None else load_tensors(source, WEIGHTS)
    return None if config is None or state is None else (config, state)


def _convert(source: ModelSource) -> None:
    config, canonical = read_gguf(source)
    state = fuse_state_dict(config, canonical)
    del canonical  # q/k/v and gate/up parts: freed before the write
    save_tensors(source, WEIGHTS, state)
    text = json.dumps(config.to_dict(), indent=2)
    save_artefact(source, CONFIG, lambda where: where.write_text(text, encoding="utf-8"))  # last: marks it complete
