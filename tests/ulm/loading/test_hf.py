"""ulm.loading.hf: HF config.json → ModelConfig (architectures, rope scalings, eos ids), safetensors
(single and sharded) → canonical weights, and the clear errors for what cannot be loaded.

Run: .venv/bin/python -m pytest tests/ulm/loading/test_hf.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.checkpoints import save_tiny_hf
from ulm.config import RopeScaling
from ulm.errors import ModelLoadError, UnsupportedError
from ulm.loading.hf import config_from_hf, read_hf, rope_scaling_from_hf

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def no_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no_tokenizer")  # these tests need weights only


def write_config(path: Path, **fields: Any) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    base = dict(model_type="llama", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=256)
    (path / "config.json").write_text(json.dumps({**base, **fields}))
    return path


def test_llama_config(tiny_llama_dir: Path) -> None:
    config = config_from_hf(tiny_llama_dir)
    assert (config.arch, config.dim, config.n_layers, config.n_heads, config.n_kv_heads, config.hidden_dim) == (
        "llama", 64, 2, 4, 2, 128)
    assert (config.vocab_size, config.max_seq_len, config.rope_theta, config.tie_embeddings) == (
        49152, 512, 100000.0, True)
    assert (config.qkv_bias, config.bos_token_id, config.eos_token_ids, config.rope_scaling.kind) == (
        False, 1, (2,), "none")


def test_qwen2_has_qkv_bias_and_mistral_a_sliding_window(tmp_path: Path) -> None:
    assert config_from_hf(write_config(tmp_path / "q", model_type="qwen2")).qkv_bias
    mistral = config_from_hf(write_config(tmp_path / "m", model_type="mistral", sliding_window=64))
    assert mistral.sliding_window == 64 and not mistral.qkv_bias
    assert config_from_hf(write_config(tmp_path / "l", attention_bias=True)).qkv_bias


def test_generation_config_eos_ids_win(tmp_path: Path) -> None:
    path = write_config(tmp_path, eos_token_id=2)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    assert config_from_hf(path).eos_token_ids == (2, 7)


@pytest.mark.parametrize(("params", "expected"), [
    ({"rope_type": "linear", "factor": 2.0}, RopeScaling("linear", 2.0)),
    ({"type": "dynamic", "factor": 4.0}, RopeScaling("ntk", 4.0, 256)),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
     RopeScaling("yarn", 4.0, 64)),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "mscale": 1.0,
      "mscale_all_dim": 0.5, "beta_fast": 16, "truncate": False},
     RopeScaling("yarn", 4.0, 64, beta_fast=16.0, attn_factor=(0.1 * 1.3862943611198906 + 1) /
                 (0.05 * 1.3862943611198906 + 1), truncate=False)),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 128}, RopeScaling("llama3", 8.0, 128)),
    ({"rope_type": "default"}, RopeScaling()),
], ids=["linear", "dynamic", "yarn", "yarn-mscale", "llama3", "default"])
def test_rope_scaling_dicts(params: dict[str, Any], expected: RopeScaling) -> None:
    got = rope_scaling_from_hf(params, 256, Path("config.json"))
    assert got.kind == expected.kind and got.factor == expected.factor
    assert got.original_max_seq_len == expected.original_max_seq_len
    assert (got.beta_fast, got.truncate) == (expected.beta_fast, expected.truncate)
    assert got.attn_factor == pytest.approx(expected.attn_factor)


def test_rope_parameters_of_transformers_5_and_classic_keys_agree(tmp_path: Path) -> None:
    new = config_from_hf(write_config(tmp_path / "new", rope_parameters={
        "rope_theta": 5e5, "rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 256}))
    old = config_from_hf(write_config(tmp_path / "old", rope_theta=5e5, rope_scaling={
        "type": "yarn", "factor": 2.0, "original_max_position_embeddings": 256}))
    assert new == old
    assert (new.rope_theta, new.rope_scaling.kind, new.max_seq_len) == (5e5, "yarn", 512)


def test_weights_load_under_canonical_names(tmp_path: Path, no_tokenizer: Path) -> None:
    path = save_tiny_hf(tmp_path / "qwen", "qwen2", tokenizer_dir=no_tokenizer)
    _, state = read_hf(path)
    assert state["layers.1.attn.wk.bias"].shape == (32,) and "lm_head.weight" in state
    assert state["layers.0.attn.wq.weight"].shape == (64, 64)
    from safetensors.torch import load_file

    hf = load_file(str(path / "model.safetensors"))
    torch.testing.assert_close(state["layers.1.mlp.w_gate.weight"], hf["model.layers.1.mlp.gate_proj.weight"])


def test_sharded_checkpoint_loads_like_a_single_file(tmp_path: Path, no_tokenizer: Path) -> None:
    from transformers import AutoModelForCausalLM

    single = save_tiny_hf(tmp_path / "single", "llama", tokenizer_dir=no_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(str(single))
    model.save_pretrained(str(tmp_path / "sharded"), max_shard_size="1MB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    _, a = read_hf(single)
    _, b = read_hf(tmp_path / "sharded")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0)


def test_unsupported_model_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match=r"model_type 'gpt2' is not supported \(supported: llama, mistral"):
        config_from_hf(write_config(tmp_path, model_type="gpt2"))
    with pytest.raises(UnsupportedError, match="hidden_act 'gelu'"):
        config_from_hf(write_config(tmp_path, hidden_act="gelu"))


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    del cfg["hidden_size"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"config\.json: missing hidden_size"):
        config_from_hf(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"config\.json: cannot read"):
        config_from_hf(path)
    with pytest.raises(ModelLoadError, match="n_heads 4 is not a multiple of n_kv_heads 3"):
        config_from_hf(write_config(tmp_path, num_key_value_heads=3))


def test_missing_or_damaged_weights_are_clear_errors(tmp_path: Path, no_tokenizer: Path) -> None:
    empty = write_config(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors weights"):
        read_hf(empty)
    path = save_tiny_hf(tmp_path / "cut", "llama", tokenizer_dir=no_tokenizer)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: not a readable safetensors file"):
        read_hf(path)


def test_config_that_does_not_fit_the_weights_names_the_tensors(tmp_path: Path, no_tokenizer: Path) -> None:
    path = save_tiny_hf(tmp_path / "m", "llama", tokenizer_dir=no_tokenizer)
    cfg = json.loads((path / "config.json").read_text())
    cfg["num_key_value_heads"] = 4
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"weights do not fit the config: shape mismatch: "
                                             r"layers\.0\.attn\.wk\.weight \(32, 64\) \(config says \(64, 64\)\)"):
        read_hf(path)
