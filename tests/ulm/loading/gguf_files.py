"""Write small GGUF files for loader tests, the way llama.cpp's converter does (gguf.GGUFWriter).

`write_gguf(path, arch, config_overrides, state, types)` takes a canonical state dict (HF row order),
permutes llama's Q/K rows into llama.cpp's order (ulm.convert's names and permutation), quantises each tensor
to the GGML type `types` names for it (default F32) and writes the metadata a llama.cpp loader reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from tests.support.small_tokenizer import CHATML, SPECIAL
from ulm.config import ModelConfig
from ulm.convert.gguf_export import permute_rows
from ulm.convert.names import gguf_name


def write_gguf(path: Path, config: ModelConfig, state: dict[str, torch.Tensor], types: dict[str, str] | None = None,
               default_type: str = "F32", extra_kv: Callable[[gguf.GGUFWriter], None] | None = None,
               raw: dict[str, tuple[np.ndarray, str]] | None = None) -> Path:
    """A GGUF of `config` + canonical `state`; `raw` adds tensors given as (bytes, GGML type) as they are."""
    arch = config.arch if config.arch == "qwen2" else "llama"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(config.max_seq_len)
    w.add_vocab_size(config.vocab_size)
    w.add_embedding_length(config.dim)
    w.add_block_count(config.n_layers)
    w.add_feed_forward_length(config.hidden_dim)
    w.add_head_count(config.n_heads)
    w.add_head_count_kv(config.n_kv_heads or config.n_heads)
    w.add_rope_freq_base(config.rope_theta)
    w.add_layer_norm_rms_eps(config.norm_eps)
    w.add_rope_dimension_count(config.head_dim or config.dim // config.n_heads)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    if extra_kv is not None:
        extra_kv(w)
    for name, tensor in state.items():
        data: Any = tensor.float().numpy()
        if arch == "llama" and ".attn.wq." in name:
            data = permute_rows(data, config.n_heads)
        elif arch == "llama" and ".attn.wk." in name:
            data = permute_rows(data, config.n_kv_heads or config.n_heads)
        kind = gguf.GGMLQuantizationType[(types or {}).get(name, default_type)]
        if kind == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gguf_name(name), data)
        elif kind == gguf.GGMLQuantizationType.F16:
            w.add_tensor(gguf_name(name), data.astype(np.float16))
        else:
            w.add_tensor(gguf_name(name), gguf.quants.quantize(data, kind), raw_dtype=kind)
    for name, (blocks, kind_name) in (raw or {}).items():
        w.add_tensor(name, blocks, raw_dtype=gguf.GGMLQuantizationType[kind_name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _byte_chars() -> list[str]:
    """GPT-2's byte → printable character table (what byte-level BPE vocabularies are spelled in)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b if b in printable else next(extra)) for b in range(256)]


def add_byte_level_tokenizer(w: gguf.GGUFWriter, vocab_size: int = 320) -> None:
    """A small byte-level BPE tokenizer (`SPECIAL` tokens 0-2, the 256 bytes, a few merges, padding to
    `vocab_size`) with a ChatML template, as `write_gguf`'s `extra_kv`: transformers builds it from the
    metadata as it does for llama.cpp's files."""
    merges = ["Ġ t", "h e", "Ġt he", "i n", "e r"]
    tokens = [*SPECIAL, *_byte_chars(), *(m.replace(" ", "") for m in merges)]
    tokens += [f"<extra_{i}>" for i in range(vocab_size - len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (len(tokens) - 3))
    w.add_token_merges(merges)
    w.add_chat_template(CHATML)
