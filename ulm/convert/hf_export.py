"""A model → an HF safetensors directory: what transformers (and vLLM, llama.cpp's converter) load.

    config.json             HF's Llama / Mistral / Qwen2 form (`hf_config.hf_config_dict`, strict: a model
                            HF cannot express is a ConvertError naming what)
    generation_config.json  BOS / EOS ids
    model.safetensors       HF tensor names (`model.layers.0.self_attn.q_proj.weight` ...), in `dtype`;
                            no lm_head.weight when the embedding is tied (transformers ties it on load)
    tokenizer files         copied from the source, when it has them

HF's q/k rows use the same rotate-half order as µLM's canonical layout: no permutation is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ulm.convert.errors import ConvertError
from ulm.convert.hf_config import hf_config_dict
from ulm.convert.modeldir import copy_tokenizer, save_weights
from ulm.convert.names import hf_name
from ulm.convert.source import Source

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def prepare_out(out: Path, overwrite: bool) -> None:
    """A new or empty output directory (or, with overwrite, any directory)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ConvertError(f"{out}: exists and is not an empty directory (use --overwrite)")
    out.mkdir(parents=True, exist_ok=True)


def export_hf(src: Source, out: Path, dtype: str = "float32", overwrite: bool = False) -> Path:
    """Write `src` as an HF directory into `out`; the directory."""
    if dtype not in DTYPES:
        raise ConvertError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    config = hf_config_dict(src.config, strict=True, torch_dtype=dtype)
    prepare_out(out, overwrite)
    weights = {hf_name(k): v.to(DTYPES[dtype]) for k, v in src.state.items() if k != "lm_head.weight"
               or not src.config.tie_embeddings}
    save_weights(out / "model.safetensors", weights, metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    generation = {"bos_token_id": src.config.bos_token_id, "eos_token_id": list(src.config.eos_token_ids) or None}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    if src.tokenizer_dir is not None:
        copy_tokenizer(src.tokenizer_dir, out)
    return out
