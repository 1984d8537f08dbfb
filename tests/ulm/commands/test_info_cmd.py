"""`ulm info`: shape, parameters, memory and tensor types of HF dirs and GGUF files, as a table or JSON.

Run: .venv/bin/python -m pytest tests/ulm/commands/test_info_cmd.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ulm.cli import app
from ulm.loading.hf import config_from_hf

runner = CliRunner()


def test_json_describes_an_hf_dir(tiny_llama_dir: Path) -> None:
    result = runner.invoke(app, ["info", str(tiny_llama_dir), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    config = config_from_hf(tiny_llama_dir)
    assert info["architecture"] == "llama" and info["layers"] == 2
    assert (info["heads"], info["kv_heads"], info["attention"]) == (4, 2, "GQA (2 query heads per KV head)")
    assert (info["dim"], info["head_dim"], info["hidden_dim"], info["vocab_size"]) == (64, 16, 128, 49152)
    assert info["context"] == 512 and info["rope"]["theta"] == 100000.0
    assert info["parameters"] == config.n_params()
    assert info["weight_bytes"]["fp32 (exact)"] == 4 * config.n_params()
    assert info["kv_cache_bytes_per_token"] == {"fp32": 2 * 2 * 2 * 16 * 4, "bf16": 2 * 2 * 2 * 16 * 2}
    assert info["tensor_types"] == {"F32": 2 * 9 + 2}  # per layer 7 linears + 2 norms; embedding, final norm
    assert info["source"]["kind"] == "hf"


def test_table_names_every_field(tiny_llama_dir: Path) -> None:
    result = runner.invoke(app, ["info", str(tiny_llama_dir)])
    assert result.exit_code == 0
    for label in ("architecture", "layers", "heads", "dims", "vocabulary", "context", "rope", "parameters",
                  "weights, fp32 (exact)", "KV cache/token", "tensor types"):
        assert label in result.stdout


def test_missing_and_broken_models_are_one_line_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "nothing.gguf")])
    assert result.exit_code == 1 and result.stderr.startswith("error: unknown model")
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(b"GGUF\x03\x00")
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 1 and "cut.gguf" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_embedded_gguf_info() -> None:
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["layers"], info["heads"], info["kv_heads"], info["dim"]) == (30, 9, 3, 576)
    assert info["tensor_types"] == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert info["tied_embeddings"] and abs(info["parameters"] - 134.5e6) < 1e6
