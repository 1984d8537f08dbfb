"""GGUF checkpoints (llama.cpp's format) → ModelConfig + canonical state dict, through the `gguf` package.

- `open_gguf` reads the structure with µLM's own reader (`ulm.loading.gguf_file`, ~40× faster than
  gguf.GGUFReader) over the memory-mapped file, or over a model's verified pieces mapped back to back
  (`ulm.loading.verified`); every reader error (bad magic, truncated header or data, unknown tensor type)
  becomes one ModelLoadError line naming the file.
- Metadata → ModelConfig for the `llama` and `qwen2` architectures (Mistral GGUFs say `llama`): shapes,
  rope base and scaling (none, linear, yarn), norm eps, qkv bias (present `attn_q.bias`), tied head
  (absent `output.weight`), bos/eos ids.
- Tensor types: F32, F16, BF16 kept as they are; Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K (what the
  common Q4/Q5/Q6/Q8 files hold) dequantised to fp32 with gguf.quants (vectorised numpy; about 0.8 s for
  the embedded model's 135 M weights here); others (Q2_K, Q3_K, IQ*) are refused by name.
- llama.cpp stores llama's Q/K rows permuted for its interleaved RoPE; `unpermute_rows` restores HF's
  rotate-half order (a row permutation, so it applies to raw quantised blocks as well).
- `read_gguf_blocks` gives the raw quantised blocks per tensor (canonical names, HF row order) so the
  fast mode can repack them losslessly (`open_gguf_blocks` with the opened file, whose mapping the K-quant
  repack releases page by page).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ulm.config import ConfigError, ModelConfig, RopeScaling
from ulm.errors import ModelLoadError, UnsupportedError
from ulm.loading.gguf_file import GGUFFile
from ulm.loading.messages import show
from ulm.loading.parts import PartsError
from ulm.loading.verified import mapped_source
from ulm.model import check_state_dict
from ulm.registry import ModelSource

ARCHES = ("llama", "qwen2")
FLOAT_TYPES = ("F32", "F16", "BF16")
QUANT_TYPES = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")
SUPPORTED_TYPES = FLOAT_TYPES + QUANT_TYPES

_LAYER_NAMES = {  # llama.cpp's per-layer tensor names → canonical names
    "attn_norm": "attn_norm", "attn_q": "attn.wq", "attn_k": "attn.wk", "attn_v": "attn.wv",
    "attn_output": "attn.wo", "ffn_norm": "mlp_norm", "ffn_gate": "mlp.w_gate", "ffn_up": "mlp.w_up",
    "ffn_down": "mlp.w_down",
}
_GLOBAL_NAMES = {"token_embd": "embed", "output_norm": "norm", "output": "lm_head"}
ROPE_FREQS = "rope_freqs.weight"  # read into the config's RopeScaling.freq_factors, not a weight


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor's raw GGUF data: its GGML type, HF-order shape, and its bytes uint8 [rows, row_bytes]
    (row_bytes = cols / block_size · block_bytes, e.g. Q4_1: cols / 32 · 20); rows in HF order (Q/K un-permuted)."""

    ggml_type: str
    shape: tuple[int, ...]
    blocks: np.ndarray


def canonical_name(name: str, path: Path | str | None = None) -> str:
    """The canonical state-dict name of a llama.cpp tensor name; UnsupportedError for unknown tensors."""
    where = f"{path}: " if path is not None else ""
    stem, _, kind = name.rpartition(".")
    if kind in ("weight", "bias"):
        if stem in _GLOBAL_NAMES:
            return f"{_GLOBAL_NAMES[stem]}.{kind}"
        parts = stem.split(".")
        if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER_NAMES:
            return f"layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{kind}"
    raise UnsupportedError(f"{where}GGUF tensor '{show(name)}' is not part of a llama/qwen2 model")


def unpermute_rows(rows: Any, n_heads: int) -> Any:
    """Undo llama.cpp's Q/K row permutation (per head: interleaved pairs → two halves) along axis 0."""
    shape = rows.shape
    per_head = shape[0] // n_heads
    split = rows.reshape(n_heads, per_head // 2, 2, *shape[1:])  # [H, hd/2, 2, ...]
    return split.swapaxes(1, 2).reshape(shape)  # [H·hd, ...] with each head's rows as (first half, second half)


def open_gguf(src: Path | ModelSource) -> GGUFFile:
    """A GGUF's metadata and tensor index over its memory-mapped bytes (a model in pieces mapped back to back,
    verified first); ModelLoadError for anything that is not a readable GGUF with supported tensor types."""
    where = _where(src)
    try:
        if isinstance(src, Path):
            gf = GGUFFile.open(src)
        elif src.parts:
            gf = GGUFFile(mapped_source(src), where, file_backed=True)
        else:
            gf = GGUFFile.open(src.path)
    except (ValueError, OSError, MemoryError, PartsError) as e:
        raise ModelLoadError(f"{where}: not a readable GGUF file ({_reason(e)})") from None
    for t in gf.tensors:
        if t.tensor_type.name not in SUPPORTED_TYPES:
            raise UnsupportedError(f"{where}: tensor {show(t.name)} has GGML type {t.tensor_type.name}, which µLM "
                                   f"does not support (supported: {', '.join(SUPPORTED_TYPES)})")
    return gf


def _where(src: Path | ModelSource) -> str:
    """How a GGUF is named in messages: its path, or the short name of a model in pieces."""
    if isinstance(src, Path):
        return str(src)
    return src.name if src.parts else str(src.path)


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _field(reader: GGUFFile, key: str, default: Any = None) -> Any:
    return reader.fields.get(key, default)


def config_from_gguf(reader: GGUFFile, path: Path | str) -> ModelConfig:
    """ModelConfig from a GGUF's metadata (and which tensors it holds)."""
    try:
        return _config_from_gguf(reader, path)
    except (ValueError, IndexError, TypeError, KeyError, OverflowError) as e:  # metadata of the wrong type or shape
        raise ModelLoadError(f"{path}: unreadable GGUF metadata ({_reason(e)})") from None


def _config_from_gguf(reader: GGUFFile, path: Path | str) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch not in ARCHES:
        raise UnsupportedError(f"{path}: GGUF architecture '{show(arch)}' is not supported "
                               f"(supported: {', '.join(ARCHES)})")
    names = {t.name for t in reader.tensors}
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise ModelLoadError(f"{path}: missing tensor token_embd.weight")

    def need(key: str) -> Any:
        value = _field(reader, f"{arch}.{key}")
        if value is None:
            raise ModelLoadError(f"{path}: GGUF metadata lacks {arch}.{key}")
        return value

    n_heads = int(need("attention.head_count"))
    dim = int(need("embedding_length"))
    eos = [_field(reader, f"tokenizer.ggml.{k}") for k in ("eos_token_id", "eot_token_id", "eom_token_id")]
    try:
        return ModelConfig(
            arch=arch,
            vocab_size=int(embd.shape[1]),
            dim=dim,
            n_layers=int(need("block_count")),
            n_heads=n_heads,
            n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", n_heads)),
            head_dim=int(_field(reader, f"{arch}.attention.key_length", dim // n_heads)),
            hidden_dim=int(need("feed_forward_length")),
            max_seq_len=int(_field(reader, f"{arch}.context_length", 2048)),
            rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
            rope_scaling=replace(_rope_scaling(reader, arch, path), freq_factors=_freq_factors(reader, path)),
            norm_eps=float(need("attention.layer_norm_rms_epsilon")),
            qkv_bias="blk.0.attn_q.bias" in names,
            tie_embeddings="output.weight" not in names,
            bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
            eos_token_ids=tuple(dict.fromkeys(int(e) for e in eos if e is not None)),
        )
    except ConfigError as e:
        raise ModelLoadError(f"{path}: {e}") from None


def _freq_factors(reader: GGUFFile, path: Path | str) -> tuple[float, ...] | None:
    """llama.cpp's `rope_freqs.weight` (Llama 3.1-style scaling): per-pair divisors of the rope frequencies."""
    t = next((t for t in reader.tensors if t.name == ROPE_FREQS), None)
    if t is None:
        return None
    if t.tensor_type.name != "F32":
        raise ModelLoadError(f"{path}: tensor {ROPE_FREQS} has type {t.tensor_type.name}, expected F32")
    return tuple(float(f) for f in np.asarray(t.data).reshape(-1))


def _rope_scaling(reader: GGUFFile, arch: str, path: Path | str) -> RopeScaling:
    kind = _field(reader, f"{arch}.rope.scaling.type", "none")
    factor = _field(reader, f"{arch}.rope.scaling.factor")
    if factor is None and _field(reader, f"{arch}.rope.scale_linear") is not None:  # older llama.cpp key
        kind, factor = "linear", _field(reader, f"{arch}.rope.scale_linear")
    factor = 1.0 if factor is None else float(factor)
    if kind == "none" or (kind == "linear" and factor == 1.0):
        return RopeScaling()
    original = _field(reader, f"{arch}.rope.scaling.original_context_length")
    if kind == "linear":
        return RopeScaling("linear", factor)
    if kind == "yarn":
        extra = {k: float(v) for k in ("beta_fast", "beta_slow")
                 if (v := _field(reader, f"{arch}.rope.scaling.yarn_{k}")) is not None}
        return RopeScaling("yarn", factor, int(original) if original else None, **extra)
    raise UnsupportedError(f"{path}: GGUF rope scaling '{show(kind)}' is not supported "
                           "(supported: none, linear, yarn)")


def _rows_in_hf_order(name: str, array: Any, config: ModelConfig, arch: str) -> Any:
    if arch != "llama":
        return array  # qwen2 GGUFs keep HF's order (NEOX-style rope in llama.cpp)
    if name.endswith("attn.wq.weight") or name.endswith("attn.wq.bias"):
        return unpermute_rows(array, config.n_heads)
    if name.endswith("attn.wk.weight") or name.endswith("attn.wk.bias"):
        assert config.n_kv_heads is not None
        return unpermute_rows(array, config.n_kv_heads)
    return array


def _to_torch(t: Any) -> torch.Tensor:
    """A GGUF tensor's values in HF shape: floats as they are (zero-copy views), quantised types as fp32."""
    from gguf import quants

    kind, shape = t.tensor_type.name, tuple(int(s) for s in reversed(t.shape))
    if kind == "BF16":
        return torch.from_numpy(np.ascontiguousarray(t.data).view(np.int16)).view(torch.bfloat16).reshape(shape)
    if kind in ("F32", "F16"):
        return torch.from_numpy(np.ascontiguousarray(t.data)).reshape(shape)
    with np.errstate(all="ignore"):  # NaN/inf scales of a damaged file are reported by the caller
        return torch.from_numpy(quants.dequantize(t.data, t.tensor_type)).reshape(shape)


def read_gguf(src: Path | ModelSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, canonical state dict) of a GGUF file (or model in pieces); quantised tensors dequantised to fp32."""
    reader = open_gguf(src)
    path = _where(src)
    config = config_from_gguf(reader, path)
    arch = _field(reader, "general.architecture")
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if t.name == ROPE_FREQS:
            continue
        name = canonical_name(t.name, path)
        try:
            tensor = _rows_in_hf_order(name, _to_torch(t), config, arch)
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{path}: tensor {show(t.name)} cannot be read ({_reason(e)})") from None
        if not torch.isfinite(tensor).all():
            raise ModelLoadError(f"{path}: tensor {show(t.name)} holds NaN or infinite values (corrupted file?)")
        state[name] = tensor.contiguous()
    check_state_dict(config, state, path)
    return config, state


def read_gguf_blocks(src: Path | ModelSource) -> tuple[ModelConfig, dict[str, GGUFTensor]]:
    """(config, raw tensors by canonical name): GGML type, HF shape, bytes uint8 [rows, row_bytes]."""
    _, config, raw = open_gguf_blocks(src)
    return config, raw


def open_gguf_blocks(src: Path | ModelSource) -> tuple[GGUFFile, ModelConfig, dict[str, GGUFTensor]]:
    """The opened file (its mapping), its config and its raw tensors by canonical name, as `read_gguf_blocks`
    gives them: views into the mapping where the rows are in HF order already (qwen2, llama's other tensors)."""
    import gguf

    reader = open_gguf(src)
    path = _where(src)
    config = config_from_gguf(reader, path)
    arch = _field(reader, "general.architecture")
    out: dict[str, GGUFTensor] = {}
    for t in reader.tensors:
        if t.name == ROPE_FREQS:
            continue
        name = canonical_name(t.name, path)
        shape = tuple(int(s) for s in reversed(t.shape))
        block, size = gguf.GGML_QUANT_SIZES[t.tensor_type]
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        raw = np.asarray(t.data).view(np.uint8).reshape(rows, shape[-1] // block * size)
        out[name] = GGUFTensor(t.tensor_type.name, shape, _rows_in_hf_order(name, raw, config, arch))
    return reader, config, out
