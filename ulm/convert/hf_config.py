"""ModelConfig → HF's config.json form, and canonical tensor names → HF's names.

- `hf_config_dict(config, strict)`: the keys transformers' LlamaConfig / MistralConfig / Qwen2Config read
  (classic `rope_theta` + `rope_scaling`, which transformers 4 and 5 both accept). The model type follows
  from the config: qwen2 when q/k/v have biases (HF's Llama `attention_bias` would add one to o_proj too),
  mistral with a sliding window, llama otherwise. `RopeScaling` maps back as ulm/loading/hf.py reads it
  (ntk ↔ dynamic, whose max_position_embeddings HF gives before the extension). With strict, a config HF
  cannot express (LayerNorm, a GELU MLP, explicit rope frequency divisors) is a ConvertError; without, the
  closest form is written (a µLM model directory adds the exact config beside it).
"""

from __future__ import annotations

from typing import Any

from ulm.config import ModelConfig, RopeScaling
from ulm.convert.errors import ConvertError

ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def model_type(config: ModelConfig) -> str:
    """The HF model_type that holds this config's shape."""
    if config.qkv_bias:
        return "qwen2"
    return "mistral" if config.sliding_window is not None else "llama"


def unsupported_by_hf(config: ModelConfig) -> list[str]:
    """What of this config HF's Llama family cannot express."""
    problems = []
    if config.norm != "rmsnorm":
        problems.append(f"norm '{config.norm}' (HF Llama models use RMSNorm)")
    if config.mlp != "swiglu":
        problems.append(f"mlp '{config.mlp}' (HF Llama models use SwiGLU)")
    if config.rope_scaling.freq_factors is not None:
        problems.append("rope freq_factors (llama.cpp's rope_freqs; HF uses the llama3 rope type)")
    if config.qkv_bias and config.sliding_window is not None:
        problems.append("q/k/v biases together with a sliding window")
    return problems


def _rope_scaling(s: RopeScaling, max_seq_len: int) -> tuple[dict[str, Any] | None, int]:
    """(HF rope_scaling, max_position_embeddings) for a µLM rope scaling."""
    if s.kind == "none":
        return None, max_seq_len
    if s.kind == "linear":
        return {"rope_type": "linear", "factor": s.factor}, max_seq_len
    if s.kind == "ntk":
        return {"rope_type": "dynamic", "factor": s.factor}, max(1, round(max_seq_len / s.factor))
    if s.kind == "yarn":
        out: dict[str, Any] = {"rope_type": "yarn", "factor": s.factor, "beta_fast": s.beta_fast,
                               "beta_slow": s.beta_slow, "original_max_position_embeddings": s.original_max_seq_len,
                               "truncate": s.truncate}
        if s.attn_factor is not None:
            out["attention_factor"] = s.attn_factor
        return out, max_seq_len
    return {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor, "original_max_position_embeddings": s.original_max_seq_len
            }, max_seq_len


def hf_config_dict(config: ModelConfig, strict: bool = True, torch_dtype: str = "float32") -> dict[str, Any]:
    """config.json for transformers (see the module docstring)."""
    problems = unsupported_by_hf(config)
    if strict and problems:
        raise ConvertError("HF transformers cannot express this model: " + "; ".join(problems))
    kind = model_type(config)
    rope_scaling, max_pos = _rope_scaling(config.rope_scaling, config.max_seq_len)
    eos: int | list[int] | None = list(config.eos_token_ids) or None
    if eos is not None and len(eos) == 1:
        eos = eos[0]
    out: dict[str, Any] = {
        "architectures": [ARCHITECTURES[kind]],
        "model_type": kind,
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu" if config.mlp == "swiglu" else "gelu_pytorch_tanh",
        "max_position_embeddings": max_pos,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": eos,
        "attention_dropout": 0.0,
        "torch_dtype": torch_dtype,
    }
    if kind == "llama":
        out.update(attention_bias=False, mlp_bias=False)
    elif kind == "mistral":
        out["sliding_window"] = config.sliding_window
    else:
        out.update(use_sliding_window=False, sliding_window=None, max_window_layers=config.n_layers)
    return out
