"""Run configs: a preset, then a JSON/TOML file, then flags and --set; every bad value a ConfigError naming it.

Run: .venv/bin/python -m pytest tests/ulm/train/test_config.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ulm.config import ConfigError, RopeScaling
from ulm.train.config import RunConfig, TrainConfig, assemble, parse_set, read_config_file
from ulm.train.presets import TRAIN_PRESETS, preset

TOML = """
preset = "small"
[model]
n_kv_heads = 2
rope_theta = 50000.0
rope_scaling = { kind = "linear", factor = 2.0 }
norm = "layernorm"
mlp = "gelu"
tie_embeddings = false
[train]
lr = 1e-3
schedule = "wsd"
betas = [0.9, 0.99]
"""


def test_file_then_flags_override_the_preset(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(TOML)
    data = read_config_file(tmp_path / "run.toml")
    run = assemble(preset(data["preset"]), data, {"model": {"n_layers": 3}, "train": {"lr": 5e-4}})
    m, t = run.model, run.train
    assert (m.n_layers, m.n_heads, m.n_kv_heads, m.dim) == (3, 8, 2, 256)  # preset shape, file, flag
    assert m.rope_scaling == RopeScaling("linear", 2.0) and m.rope_theta == 50000.0
    assert (m.norm, m.mlp, m.tie_embeddings) == ("layernorm", "gelu", False)
    assert (t.lr, t.schedule, t.betas, t.seq_len) == (5e-4, "wsd", (0.9, 0.99), 256)
    assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict()))) == run  # the checkpoint's form round-trips
    (tmp_path / "run.json").write_text(json.dumps({"model": {"n_kv_heads": 1}, "train": {"steps": 7}}))
    same = assemble(preset("tiny"), read_config_file(tmp_path / "run.json"))
    assert same.model.n_kv_heads == 1 and same.train.steps == 7


def test_set_reaches_any_field() -> None:
    sets = parse_set(["model.qkv_bias=true", "train.betas=[0.8,0.9]", "warmup_steps=5", "hidden_dim=96",
                      "train.schedule=constant"])
    assert sets == {"model": {"qkv_bias": True, "hidden_dim": 96},
                    "train": {"betas": [0.8, 0.9], "warmup_steps": 5, "schedule": "constant"}}
    run = assemble(preset("tiny"), None, sets)
    assert run.model.qkv_bias and run.train.betas == (0.8, 0.9) and run.train.schedule == "constant"


@pytest.mark.parametrize(("layer", "message"), [
    ({"train": {"lr": "fast"}}, "train.lr must be float"),
    ({"train": {"steps": 2.5}}, "train.steps must be int"),
    ({"train": {"batch_size": 10, "micro_batch": 4}}, "not a multiple of train.micro_batch"),
    ({"train": {"schedule": "linear"}}, "train.schedule 'linear' is not one of"),
    ({"train": {"warmup": 3}}, "unknown train field"),
    ({"model": {"n_kv_heads": 3}}, "not a multiple of n_kv_heads"),
    ({"model": {"norm": "batchnorm"}}, "norm 'batchnorm' is not supported"),
    ({"model": {"rope_scaling": {"kind": "yarn", "factor": 4.0}}}, "needs original_max_seq_len"),
    ({"model": {"rope_scaling": {"kind": "linear", "speed": 4.0}}}, "speed"),
    ({"train": {"seq_len": 4096}}, "longer than model.max_seq_len"),
], ids=["type-float", "type-int", "batch", "schedule", "unknown", "kv-heads", "norm", "yarn", "rope-field", "seq-len"])
def test_bad_values_are_named(layer: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        assemble(preset("tiny"), None, layer)


def test_bad_files_and_sets_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(tmp_path / "a.toml")
    (tmp_path / "b.json").write_text('{"optimizer": {}}')
    with pytest.raises(ConfigError, match="unknown key"):
        read_config_file(tmp_path / "b.json")
    with pytest.raises(ConfigError, match=r"expected section\.field=value"):
        parse_set(["lr"])
    with pytest.raises(ConfigError, match="unknown field"):
        parse_set(["colour=blue"])
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")


def test_the_global_batch_splits_over_the_ranks() -> None:
    train = TrainConfig(batch_size=16, micro_batch=4)
    assert (train.grad_accum(1), train.grad_accum(2), train.grad_accum(4)) == (4, 2, 1)
    with pytest.raises(ConfigError, match="does not split into 3 ranks"):
        train.grad_accum(3)


def test_presets_span_tiny_to_the_smollm2_shapes() -> None:
    params = {name: run.model.n_params() for name, run in TRAIN_PRESETS.items()}
    assert params["tiny"] < 4e6 < params["small"] < 20e6 < params["smollm2-135m"] < params["smollm2-360m"]
    assert round(params["smollm2-135m"] / 1e6, 1) == 134.5  # SmolLM2-135M's published count
    for run in TRAIN_PRESETS.values():
        assert run.train.seq_len <= run.model.max_seq_len and run.train.batch_size % run.train.micro_batch == 0
