"""The model a conversion reads: any reference `ulm.load` takes (a µLM checkpoint or run directory, an HF
directory, a GGUF file, a short name) → its config, canonical fp32 weights and where its tokenizer files are.

GGUF weights are dequantised (through the conversion cache) and their tokenizer is built from the metadata
and cached as HF files (ulm/tokenizer.py); `gguf_pre` keeps the file's own pre-tokenizer name, which an HF
tokenizer does not record, for a GGUF export of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ulm.config import ModelConfig


@dataclass
class Source:
    """A model read for conversion."""

    name: str
    config: ModelConfig
    state: dict[str, torch.Tensor]  # canonical names (ulm/__init__.py), fp32
    tokenizer_dir: Path | None  # a directory with tokenizer.json (and the chat template), if the model has one
    gguf_pre: str | None = None  # tokenizer.ggml.pre of a GGUF source


def _gguf_pre(path: Path) -> str | None:
    from ulm.loading.gguf import _field, open_gguf

    pre = _field(open_gguf(path), "tokenizer.ggml.pre")
    return str(pre) if pre is not None else None


def load_source(ref: str) -> Source:
    """Read `ref` (see the module docstring); ModelLoadError / ModelNotFoundError for what cannot be read."""
    from ulm.loading import load_checkpoint
    from ulm.model import build_model, to_canonical
    from ulm.registry import resolve
    from ulm.tokenizer import cached_tokenizer_dir, load_tokenizer

    source = resolve(ref)
    config, fused = load_checkpoint(source, torch.float32)
    state = dict(to_canonical(build_model(config, fused, torch.float32)))
    if source.kind == "gguf":
        load_tokenizer(source)  # converts and caches the tokenizer files on first use
        return Source(source.name, config, state, cached_tokenizer_dir(source), _gguf_pre(source.path))
    has_tokenizer = (source.path / "tokenizer.json").is_file()
    return Source(source.name, config, state, source.path if has_tokenizer else None)
