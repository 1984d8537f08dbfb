"""A model → one GGUF file (llama.cpp's format), written with the `gguf` package's GGUFWriter.

- Architecture `llama` (Mistral too, as llama.cpp's converter writes it) or `qwen2` (q/k/v biases); the keys
  llama.cpp and ulm/loading/gguf.py read: context, widths, heads, KV heads, head dim (key/value length),
  rope base and scaling (linear and YaRN natively; any other scaling, and explicit divisors, as the
  per-frequency `rope_freqs.weight` llama.cpp applies), norm eps, file type.
- Tensors F32, F16 or BF16 (`ftype`); 1-D tensors (norms, biases) stay F32 as llama.cpp keeps them. llama's
  Q/K rows are permuted back into GGUF's interleaved-pair rope order (qwen2 keeps HF's order). A tied LM
  head is not written (llama.cpp ties it when `output.weight` is absent).
- Tokenizer metadata for byte-level BPE vocabularies (GPT-2 style: SmolLM, Llama 3, Qwen2): model "gpt2",
  the pre-tokenizer name (the source GGUF's own, else recognised from tokenizer.json's split regex, else
  "default"), tokens by id (padded with [PAD{id}] up to the model's vocabulary), token types (control for
  special added tokens, user-defined for the others), merges, BOS/EOS/pad ids, add_bos, the chat template.
  Other tokenizer kinds (SentencePiece) are a ConvertError unless the export is made without a tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ulm.config import ModelConfig, RopeScaling
from ulm.convert.errors import ConvertError
from ulm.convert.hf_config import unsupported_by_hf
from ulm.convert.names import gguf_name
from ulm.convert.source import Source
from ulm.layers.rope import inv_freq_and_scale
from ulm.loading.gguf import ROPE_FREQS

FTYPES = ("f32", "f16", "bf16")
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


def permute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF's rotate-half rows → GGUF's interleaved pairs, per head (llama.cpp convert_hf_to_gguf's `permute`)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _check(config: ModelConfig) -> str:
    problems = [p for p in unsupported_by_hf(config) if not p.startswith("rope freq_factors")]
    if config.sliding_window is not None:
        problems.append("a sliding window (llama.cpp's llama architecture attends to the whole context)")
    if problems:
        raise ConvertError("GGUF's llama/qwen2 architectures cannot express this model: " + "; ".join(problems))
    return "qwen2" if config.qkv_bias else "llama"


def rope_freq_factors(config: ModelConfig) -> np.ndarray | None:
    """Per-pair frequency divisors that turn plain rope into the config's scaling (None when there are none)."""
    assert config.head_dim is not None
    base, _ = inv_freq_and_scale(config.head_dim, config.rope_theta, RopeScaling())
    scaled, _ = inv_freq_and_scale(config.head_dim, config.rope_theta, config.rope_scaling)
    factors = (base / scaled).numpy().astype(np.float32)
    return None if np.allclose(factors, 1.0, rtol=0, atol=1e-7) else factors


def _write_rope(w: Any, config: ModelConfig) -> np.ndarray | None:
    """Rope keys; the rope_freqs tensor when the scaling needs one."""
    import gguf

    w.add_rope_freq_base(config.rope_theta)
    s = config.rope_scaling
    if s.kind == "linear" and s.freq_factors is None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(s.factor)
        return None
    if s.kind == "yarn":
        if s.freq_factors is not None or s.attn_factor is not None or not s.truncate:
            raise ConvertError("YaRN with freq_factors, attn_factor or truncate=false has no GGUF form")
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(s.factor)
        w.add_rope_scaling_orig_ctx_len(int(s.original_max_seq_len or config.max_seq_len))
        w.add_rope_scaling_yarn_beta_fast(s.beta_fast)
        w.add_rope_scaling_yarn_beta_slow(s.beta_slow)
        return None
    return rope_freq_factors(config)


def _vocab(tokenizer_dir: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges) of a byte-level BPE tokenizer.json, padded to vocab_size."""
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
        raise ConvertError(f"{tokenizer_dir}: GGUF export supports byte-level BPE tokenizers (GPT-2 style: SmolLM, "
                           "Llama 3, Qwen2); export with --no-tokenizer for this one")
    by_id: dict[int, tuple[str, int]] = {i: (t, TOKEN_NORMAL) for t, i in model["vocab"].items()}
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = (added["content"], TOKEN_CONTROL if added.get("special") else TOKEN_USER_DEFINED)
    if max(by_id) >= vocab_size:
        raise ConvertError(f"the tokenizer has ids up to {max(by_id)}, beyond the model's vocabulary of {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        token, kind = by_id.get(i, (f"[PAD{i}]", TOKEN_UNUSED))
        tokens.append(token)
        types.append(kind)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def pre_tokenizer_name(tokenizer_dir: Path) -> str:
    """llama.cpp's pre-tokenizer name for this tokenizer.json's split regex ("default" when not recognised)."""
    text = (tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8")
    pre = json.loads(text).get("pre_tokenizer") or {}
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:
        return "default"
    regexes = [p.get("pattern", {}).get("Regex") for p in pre.get("pretokenizers", [pre]) if p.get("type") == "Split"]
    for name, split in GGUF_PRE_TOKENIZER_SPLITS.items():
        if split in regexes:
            return name
    return "default"


def _write_ids(w: Any, bos: int | None, eos: int | None, unk: int | None = None, pad: int | None = None) -> None:
    """The special token ids that are set."""
    for setter, token_id in ((w.add_bos_token_id, bos), (w.add_eos_token_id, eos), (w.add_unk_token_id, unk),
                             (w.add_pad_token_id, pad)):
        if token_id is not None:
            setter(int(token_id))


def _write_tokenizer(w: Any, src: Source) -> None:
    from transformers import AutoTokenizer

    assert src.tokenizer_dir is not None
    tokens, types, merges = _vocab(src.tokenizer_dir, src.config.vocab_size)
    tok = AutoTokenizer.from_pretrained(str(src.tokenizer_dir), local_files_only=True)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(src.gguf_pre or pre_tokenizer_name(src.tokenizer_dir))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    _write_ids(w, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id)
    w.add_add_bos_token(bool(getattr(tok, "add_bos_token", False)))
    if getattr(tok, "chat_template", None):
        w.add_chat_template(tok.chat_template)


def _tensor_data(name: str, t: torch.Tensor, config: ModelConfig, arch: str, ftype: str) -> tuple[np.ndarray, Any]:
    import gguf

    data = t.float().numpy()
    if arch == "llama" and ".attn.wq." in name:
        data = permute_rows(data, config.n_heads)
    elif arch == "llama" and ".attn.wk." in name:
        data = permute_rows(data, config.n_kv_heads or config.n_heads)
    if data.ndim == 1 or ftype == "f32":
        return np.ascontiguousarray(data, dtype=np.float32), None
    if ftype == "f16":
        return np.ascontiguousarray(data, dtype=np.float16), None
    return gguf.quants.quantize(np.ascontiguousarray(data), gguf.GGMLQuantizationType.BF16), \
        gguf.GGMLQuantizationType.BF16


def export_gguf(src: Source, out: Path, ftype: str = "f32", with_tokenizer: bool = True,
                overwrite: bool = False) -> Path:
    """Write `src` as one GGUF file at `out`; the path."""
    import gguf

    if ftype not in FTYPES:
        raise ConvertError(f"type '{ftype}' is not one of {', '.join(FTYPES)}")
    config = src.config
    arch = _check(config)
    if with_tokenizer and src.tokenizer_dir is None:
        raise ConvertError(f"{src.name} has no tokenizer files to put into the GGUF; export with --no-tokenizer")
    if out.exists() and not overwrite:
        raise ConvertError(f"{out}: exists (use --overwrite)")
    assert config.head_dim is not None and config.n_kv_heads is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_name(src.name)
    w.add_context_length(config.max_seq_len)
    w.add_embedding_length(config.dim)
    w.add_block_count(config.n_layers)
    w.add_feed_forward_length(config.hidden_dim)
    w.add_head_count(config.n_heads)
    w.add_head_count_kv(config.n_kv_heads)
    w.add_key_length(config.head_dim)
    w.add_value_length(config.head_dim)
    w.add_rope_dimension_count(config.head_dim)
    w.add_layer_norm_rms_eps(config.norm_eps)
    w.add_vocab_size(config.vocab_size)
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "bf16": gguf.LlamaFileType.MOSTLY_BF16}[ftype])
    freqs = _write_rope(w, config)
    if with_tokenizer:
        _write_tokenizer(w, src)
    else:
        _write_ids(w, config.bos_token_id, config.eos_token_ids[0] if config.eos_token_ids else None)
    for name, tensor in src.state.items():
        if name == "lm_head.weight" and config.tie_embeddings:
            continue
        data, raw_dtype = _tensor_data(name, tensor, config, arch, ftype)
        w.add_tensor(gguf_name(name), data, raw_dtype=raw_dtype)
    if freqs is not None:
        w.add_tensor(ROPE_FREQS, freqs)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return out
