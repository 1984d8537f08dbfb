"""Weight loading: GGUF files (gguf.py), HF directories (hf.py), the model cache (cache.py) and a source's
checkpoint through it (checkpoint.py).

    from ulm.registry import resolve
    from ulm.loading import load_checkpoint
    from ulm.model import build_model
    config, state = load_checkpoint(resolve("smollm2-135m"), torch.float32)
    model = build_model(config, state, torch.float32, "cpu")

The names below are imported on first use, so `ulm.loading.cache` (stdlib only, what `ulm cache` reads)
imports without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ulm.loading.cache import fingerprint, is_cached
    from ulm.loading.checkpoint import convert_gguf, load_checkpoint
    from ulm.loading.gguf import GGUFTensor, read_gguf, read_gguf_blocks
    from ulm.loading.hf import read_hf

_HOMES = {"fingerprint": "cache", "is_cached": "cache", "convert_gguf": "checkpoint", "load_checkpoint": "checkpoint",
          "GGUFTensor": "gguf", "read_gguf": "gguf", "read_gguf_blocks": "gguf", "read_hf": "hf"}
__all__ = ["GGUFTensor", "convert_gguf", "fingerprint", "is_cached", "load_checkpoint", "read_gguf",
           "read_gguf_blocks", "read_hf"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'ulm.loading' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ulm.loading.{_HOMES[name]}"), name)
