"""HF checkpoint directories (config.json + *.safetensors) → ModelConfig + canonical state dict.

- config.json → ModelConfig for model_type llama (SmolLM too), mistral and qwen2; both the classic keys
  (`rope_theta`, `rope_scaling`) and transformers 5's `rope_parameters` are read. A µLM model directory's
  "ulm_config" (the exact ModelConfig dict, see ulm/convert/modeldir.py) wins over the HF keys. HF rope types map to
  `RopeScaling` kinds: default → none, linear → linear, dynamic → ntk (static, see ulm/layers/rope.py),
  yarn → yarn (attention factor from `attention_factor`, or `mscale`/`mscale_all_dim`), llama3 → llama3.
  generation_config.json's eos ids win over config.json's.
- Weights: model.safetensors, or shards listed by model.safetensors.index.json (or every *.safetensors),
  memory-mapped by safetensors: nothing is read until a tensor is used, nothing is copied.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ulm.config import ConfigError, ModelConfig, RopeScaling
from ulm.errors import ModelLoadError, UnsupportedError
from ulm.loading.messages import show
from ulm.model import check_state_dict

MODEL_TYPES = ("llama", "mistral", "qwen2")

_LAYER_NAMES = {  # HF per-layer names → canonical names
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn.wq", "self_attn.k_proj": "attn.wk",
    "self_attn.v_proj": "attn.wv", "self_attn.o_proj": "attn.wo", "post_attention_layernorm": "mlp_norm",
    "mlp.gate_proj": "mlp.w_gate", "mlp.up_proj": "mlp.w_up", "mlp.down_proj": "mlp.w_down",
}
_GLOBAL_NAMES = {"model.embed_tokens": "embed", "model.norm": "norm", "lm_head": "lm_head"}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


def rope_scaling_from_hf(params: dict[str, Any] | None, max_pos: int, where: Path) -> RopeScaling:
    """RopeScaling from an HF `rope_scaling` / `rope_parameters` dict."""
    if not params:
        return RopeScaling()
    kind = params.get("rope_type", params.get("type", "default"))
    factor = float(params.get("factor") or 1.0)
    if kind == "default":
        return RopeScaling()
    if kind == "linear":
        return RopeScaling("linear", factor)
    if kind == "dynamic":
        return RopeScaling("ntk", factor, max_pos)
    original = int(params.get("original_max_position_embeddings") or max_pos)
    if kind == "yarn":
        attn = params.get("attention_factor")
        mscale, mscale_all = params.get("mscale"), params.get("mscale_all_dim")
        if attn is None and mscale and mscale_all and factor > 1:
            attn = (0.1 * mscale * math.log(factor) + 1.0) / (0.1 * mscale_all * math.log(factor) + 1.0)
        return RopeScaling("yarn", factor, original, beta_fast=float(params.get("beta_fast") or 32.0),
                           beta_slow=float(params.get("beta_slow") or 1.0),
                           attn_factor=None if attn is None else float(attn),
                           truncate=bool(params.get("truncate", True)))
    if kind == "llama3":
        return RopeScaling("llama3", factor, original, low_freq_factor=float(params["low_freq_factor"]),
                           high_freq_factor=float(params["high_freq_factor"]))
    raise UnsupportedError(f"{where}: rope scaling '{show(kind)}' is not supported "
                           "(supported: default, linear, dynamic, yarn, llama3)")


def config_from_hf(path: Path) -> ModelConfig:
    """ModelConfig from an HF directory's config.json (+ generation_config.json)."""
    where = path / "config.json"
    cfg = _read_json(where)
    if isinstance(cfg.get("ulm_config"), dict):  # a µLM model directory (ulm/convert/modeldir.py): the exact config
        try:
            return ModelConfig.from_dict(cfg["ulm_config"])
        except (ConfigError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{where}: ulm_config: {e}") from None
    model_type = cfg.get("model_type")
    if model_type not in MODEL_TYPES:
        raise UnsupportedError(f"{where}: model_type '{show(model_type)}' is not supported "
                               f"(supported: {', '.join(MODEL_TYPES)})")
    if cfg.get("hidden_act", "silu") != "silu":
        raise UnsupportedError(f"{where}: hidden_act '{show(cfg['hidden_act'])}' is not supported (supported: silu)")
    if cfg.get("mlp_bias"):
        raise UnsupportedError(f"{where}: mlp_bias is not supported")
    if model_type == "qwen2" and cfg.get("use_sliding_window"):
        raise UnsupportedError(f"{where}: Qwen2's per-layer sliding window (use_sliding_window) is not supported")
    eos = cfg.get("eos_token_id")
    gen = path / "generation_config.json"
    if gen.is_file():
        eos = _read_json(gen).get("eos_token_id", eos)
    eos_ids = (eos,) if isinstance(eos, int) else tuple(eos or ())
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or params
    try:
        max_pos = int(cfg.get("max_position_embeddings", 2048))
        rope = rope_scaling_from_hf(scaling, max_pos, where)
        if rope.kind == "ntk":
            max_pos = int(max_pos * rope.factor)
        elif rope.kind == "yarn" and rope.original_max_seq_len:
            max_pos = max(max_pos, int(rope.original_max_seq_len * rope.factor))
        return ModelConfig(
            arch=model_type,
            vocab_size=int(cfg["vocab_size"]),
            dim=int(cfg["hidden_size"]),
            n_layers=int(cfg["num_hidden_layers"]),
            n_heads=int(cfg["num_attention_heads"]),
            n_kv_heads=cfg.get("num_key_value_heads"),
            head_dim=cfg.get("head_dim"),
            hidden_dim=int(cfg["intermediate_size"]),
            max_seq_len=max_pos,
            rope_theta=float(params.get("rope_theta", cfg.get("rope_theta", 10000.0))),
            rope_scaling=rope,
            norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            qkv_bias=model_type == "qwen2" or bool(cfg.get("attention_bias", False)),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            sliding_window=cfg.get("sliding_window") if model_type == "mistral" else None,
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=eos_ids,
        )
    except KeyError as e:
        raise ModelLoadError(f"{where}: missing {e.args[0]}") from None
    except (ConfigError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{where}: {e}") from None


def canonical_name(name: str) -> str:
    """The canonical name of an HF tensor name (unknown names are returned as they are)."""
    stem, _, kind = name.rpartition(".")
    if stem in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[stem]}.{kind}"
    parts = stem.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER_NAMES:
        return f"layers.{parts[2]}.{_LAYER_NAMES[parts[3]]}.{kind}"
    return name


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of an HF directory, in shard order."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelLoadError(f"{index}: no weight_map")
        files = [path / name for name in dict.fromkeys(weight_map.values())]
    else:
        files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"{path}: no *.safetensors weights (pytorch_model.bin is not supported)")
    for f in files:
        if not f.is_file():
            raise ModelLoadError(f"{path}: weight shard {f.name} is missing")
    return files


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """All tensors of one safetensors file, memory-mapped; ModelLoadError when the file is damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{file}: not a readable safetensors file ({str(e).splitlines()[0][:200]})") from None


def read_hf(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, canonical state dict) of an HF directory; tensors stay memory-mapped in their stored dtype."""
    config = config_from_hf(path)
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(path):
        for name, tensor in read_safetensors(file).items():
            if name.endswith("rotary_emb.inv_freq"):
                continue  # a buffer some old checkpoints saved; recomputed from the config
            state[canonical_name(name)] = tensor
    if not config.tie_embeddings and "lm_head.weight" not in state and "embed.weight" in state:
        config = config.with_(tie_embeddings=True)  # checkpoints that drop a tied head without saying so
    check_state_dict(config, state, path)
    return config, state
