"""ulm.config: derived fields, validation with one-line messages, the dict form and presets.

Run: .venv/bin/python -m pytest tests/ulm/test_config.py -q
"""

from __future__ import annotations

import json

import pytest

from ulm.config import ConfigError, ModelConfig, RopeScaling, preset


def test_derived_fields() -> None:
    c = ModelConfig(vocab_size=10, dim=64, n_layers=2, n_heads=8, hidden_dim=128)
    assert (c.n_kv_heads, c.head_dim, c.n_rep) == (8, 8, 1)
    gqa = c.with_(n_kv_heads=2)
    assert gqa.n_rep == 4
    assert c.with_(dim=128).head_dim == 16


def test_dict_round_trip_through_json() -> None:
    c = preset("smollm2-135m").with_(rope_scaling=RopeScaling("yarn", 4.0, 2048, attn_factor=1.2))
    assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_old_dicts_without_new_fields_load() -> None:
    data = preset("tiny").to_dict()
    data["rope_scaling"] = {"kind": "linear", "factor": 2.0}  # written before `truncate` existed
    del data["sliding_window"]
    assert ModelConfig.from_dict(data).rope_scaling == RopeScaling("linear", 2.0)


@pytest.mark.parametrize(("changes", "message"), [
    (dict(n_kv_heads=3), "n_heads 8 is not a multiple of n_kv_heads 3"),
    (dict(dim=60), "dim 60 is not divisible by n_heads 8"),
    (dict(arch="gpt2"), "arch 'gpt2' is not supported"),
    (dict(n_layers=0), "n_layers must be positive"),
    (dict(head_dim=7), "head_dim must be even"),
])
def test_invalid_shapes_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**{**dict(vocab_size=10, dim=64, n_layers=2, n_heads=8, hidden_dim=128), **changes})


def test_rope_scaling_validation() -> None:
    with pytest.raises(ConfigError, match="rope scaling 'longrope' is not supported"):
        RopeScaling("longrope")
    with pytest.raises(ConfigError, match="needs original_max_seq_len"):
        RopeScaling("yarn", 4.0)
    with pytest.raises(ConfigError, match="factor must be > 0"):
        RopeScaling("linear", 0.0)


def test_smollm2_preset_counts_135m_parameters() -> None:
    assert 134e6 < preset("smollm2-135m").n_params() < 136e6
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")


def test_rope_freq_factors_round_trip_and_must_fit_the_head_dim() -> None:
    c = preset("tiny").with_(rope_scaling=RopeScaling(freq_factors=[1.0] * 7 + [8.0]))  # head_dim 16: 8 pairs
    assert c.rope_scaling.freq_factors == (1.0,) * 7 + (8.0,)
    assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ConfigError, match="rope freq_factors has 3 entries, head_dim 16 needs 8"):
        preset("tiny").with_(rope_scaling=RopeScaling(freq_factors=(1.0, 2.0, 4.0)))
    with pytest.raises(ConfigError, match="must all be > 0"):
        RopeScaling(freq_factors=(1.0, 0.0))
