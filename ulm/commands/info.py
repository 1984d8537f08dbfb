"""`ulm info REF`: what a checkpoint is, without loading its weights: architecture and shape, parameters,
weight memory per mode, KV cache cost per token, the source file and its tensor types."""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from ulm.commands.generate import user_errors

MIB = 1 << 20
INT4_BYTES_PER_WEIGHT = 0.5 + 4 / 32  # 4-bit weights + a bf16 scale and zero per group of 32


def _hf_tensor_types(path: Path) -> Counter[str]:
    """dtype → tensor count, from the safetensors headers (the weights are not read)."""
    from ulm.errors import ModelLoadError
    from ulm.loading.hf import weight_files

    types: Counter[str] = Counter()
    for file in weight_files(path):
        with file.open("rb") as fh:
            try:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
            except (struct.error, ValueError, MemoryError, OverflowError):
                raise ModelLoadError(f"{file}: not a readable safetensors file") from None
        types.update(v["dtype"] for k, v in header.items() if k != "__metadata__")
    return types


def describe(ref: str | None) -> dict[str, Any]:
    """Everything `ulm info` prints, as a dict (the --json output)."""
    from ulm.registry import resolve

    source = resolve(ref)
    block_bytes = None  # the fast mode's weights where they run from the file's blocks
    if source.kind == "gguf":
        from ulm.fast.blocks import in_blocks, layout
        from ulm.loading.gguf import open_gguf_blocks

        reader, config, raw = open_gguf_blocks(source)
        types = Counter(t.tensor_type.name for t in reader.tensors)
        size = source.size if source.parts else source.path.stat().st_size
        if in_blocks(config, raw):
            block_bytes = sum(slot.nbytes for slot in layout(config, raw))
    else:
        from ulm.loading.hf import config_from_hf, weight_files

        config = config_from_hf(source.path)
        types = _hf_tensor_types(source.path)
        size = sum(f.stat().st_size for f in weight_files(source.path))
    assert config.head_dim is not None and config.n_kv_heads is not None
    per_layer_linear = config.dim * config.head_dim * (2 * config.n_heads + 2 * config.n_kv_heads) + \
        (3 if config.mlp == "swiglu" else 2) * config.dim * config.hidden_dim
    linear = config.n_layers * per_layer_linear
    embed = config.vocab_size * config.dim
    params = config.n_params()
    rest = params - linear - embed * (1 if config.tie_embeddings else 2)  # norms and biases
    head_int4 = embed * INT4_BYTES_PER_WEIGHT  # fast mode: the LM head gets its own int4 copy, tied or not
    scaling = config.rope_scaling
    return {
        "name": source.name,
        "source": {"kind": source.kind, "path": str(source.path), "size_bytes": size, "pieces": len(source.parts)},
        "architecture": config.arch,
        "layers": config.n_layers,
        "heads": config.n_heads,
        "kv_heads": config.n_kv_heads,
        "attention": "MHA" if config.n_kv_heads == config.n_heads else
                     "MQA" if config.n_kv_heads == 1 else f"GQA ({config.n_rep} query heads per KV head)",
        "dim": config.dim,
        "head_dim": config.head_dim,
        "hidden_dim": config.hidden_dim,
        "vocab_size": config.vocab_size,
        "context": config.max_seq_len,
        "rope": {"theta": config.rope_theta, "scaling": scaling.kind, "factor": scaling.factor},
        "norm": config.norm,
        "mlp": config.mlp,
        "qkv_bias": config.qkv_bias,
        "tied_embeddings": config.tie_embeddings,
        "sliding_window": config.sliding_window,
        "parameters": params,
        "weight_bytes": {
            "fp32 (exact)": params * 4,
            "bf16": params * 2,
            **({"int4 (fast)": int(linear * INT4_BYTES_PER_WEIGHT + embed * 2 + head_int4 + rest * 2)}
               if block_bytes is None else  # int4 linears and head, bf16 embedding and norms
               {"GGUF blocks (fast)": block_bytes + rest * 4}),  # the linears' blocks; the embedding read in place
        },
        "kv_cache_bytes_per_token": {"fp32": config.kv_cache_bytes(1, 1, 4), "bf16": config.kv_cache_bytes(1, 1, 2)},
        "tensor_types": dict(types.most_common()),
        "bos_token_id": config.bos_token_id,
        "eos_token_ids": list(config.eos_token_ids),
    }


def _human(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / 1024:.1f} KiB"


def _print(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rope = info["rope"]
    rope_text = f"θ={rope['theta']:g}"
    if rope["scaling"] != "none":
        rope_text += f", {rope['scaling']} scaling ×{rope['factor']:g}"
    rows = [
        ("model", info["name"]),
        ("source", f"{info['source']['path']} ({info['source']['kind']}, {_human(info['source']['size_bytes'])})"),
        ("architecture", f"{info['architecture']}, {info['norm']}, {info['mlp']}"
                         + (", qkv bias" if info["qkv_bias"] else "")
                         + (", tied embeddings" if info["tied_embeddings"] else "")),
        ("layers", str(info["layers"])),
        ("heads", f"{info['heads']} query / {info['kv_heads']} KV: {info['attention']}"),
        ("dims", f"model {info['dim']}, head {info['head_dim']}, MLP {info['hidden_dim']}"),
        ("vocabulary", str(info["vocab_size"])),
        ("context", f"{info['context']} tokens" + (f" (sliding window {info['sliding_window']})"
                                                    if info["sliding_window"] else "")),
        ("rope", rope_text),
        ("parameters", f"{info['parameters'] / 1e6:.1f} M"),
    ]
    rows += [(f"weights, {mode}", _human(n)) for mode, n in info["weight_bytes"].items()]
    rows += [(f"KV cache/token, {k}", _human(v)) for k, v in info["kv_cache_bytes_per_token"].items()]
    rows.append(("tensor types", ", ".join(f"{k} ×{v}" for k, v in info["tensor_types"].items())))
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table, highlight=False)


def info(
    ref: str = typer.Argument(None, help="Short name (see `ulm models`), .gguf file or HF directory. "
                              "Default: the embedded smollm2-135m."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Describe a model without loading its weights: shape, parameters, memory per mode, tensor types.

    \b
    Examples:
      ulm info
      ulm info ./Qwen2-0.5B-Instruct --json
    """
    from ulm.commands.progressbar import shown

    with user_errors(), shown():  # checking a model's pieces the first time
        data = describe(ref)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _print(data)
