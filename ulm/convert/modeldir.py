"""A µLM model directory: what `ulm train` checkpoints and `ulm convert gqa` write, and `ulm.load` reads.

    config.json          HF form (`hf_config.hf_config_dict`, non-strict) plus "ulm_config": the exact
                         ModelConfig dict, which ulm/loading/hf.py reads in preference to the HF keys (so a
                         LayerNorm or GELU model loads too)
    model.safetensors    the weights under the canonical names of ulm/__init__.py (no tied lm_head)
    tokenizer files      copied from a tokenizer directory (tokenizer.json, tokenizer_config.json, template)

`write_model_dir(target, config, state, tokenizer_dir)` writes into `target` (created if needed); each file
goes through a temp name and a rename. `copy_tokenizer(src, dst)` copies the tokenizer files only.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from ulm.config import ModelConfig
from ulm.convert.hf_config import hf_config_dict

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")


def config_json(config: ModelConfig, torch_dtype: str = "float32") -> dict[str, object]:
    """The config.json of a µLM model directory."""
    return {**hf_config_dict(config, strict=False, torch_dtype=torch_dtype), "ulm_config": config.to_dict()}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_weights(path: Path, state: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors file of `state` (contiguous CPU copies), written through a temp name.

    safetensors writes the metadata in hash-map order, which varies from one save to the next: with more
    than one key, the same weights would give different bytes. So at most one key is accepted."""
    from safetensors.torch import save_file

    if metadata is not None and len(metadata) > 1:
        raise ValueError("save_weights keeps the bytes reproducible with at most one metadata key")

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    tmp.chmod(0o644)  # safetensors creates it private; a model directory is as readable as its other files
    os.replace(tmp, path)


def copy_tokenizer(src: Path, dst: Path) -> list[str]:
    """Copy the tokenizer files found in `src` into `dst`; the names copied."""
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    return copied


def write_model_dir(target: Path, config: ModelConfig, state: Mapping[str, torch.Tensor],
                    tokenizer_dir: Path | None) -> Path:
    """Write a µLM model directory (see the module docstring); canonical `state`, any float dtype."""
    target.mkdir(parents=True, exist_ok=True)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    torch_dtype = str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else "float32"
    save_weights(target / WEIGHTS, state, metadata={"format": "pt"})
    if tokenizer_dir is not None:
        copy_tokenizer(tokenizer_dir, target)
    _write_text(target / CONFIG, json.dumps(config_json(config, torch_dtype), indent=2) + "\n")
    return target
