"""ulm.loading.cache: a GGUF is converted once into the model cache and mapped from there afterwards;
a changed source invalidates its entry; a failed conversion leaves no half entry.

Run: .venv/bin/python -m pytest tests/ulm/loading/test_cache.py -q
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import ulm.loading.cache as cache_mod
from cb.paths import model_cache_dir
from ulm.errors import ModelLoadError
from ulm.loading import fingerprint, is_cached, load_checkpoint
from ulm.model import build_model
from ulm.registry import ModelSource


@pytest.fixture
def source(tiny_gguf: Path, tmp_path: Path) -> ModelSource:
    path = tmp_path / "model.gguf"
    shutil.copy2(tiny_gguf, path)
    return ModelSource("tiny", "gguf", path)


def entries() -> list[Path]:
    root = model_cache_dir()
    return sorted(root.iterdir()) if root.is_dir() else []


def test_first_load_converts_and_second_load_maps_the_cache(source: ModelSource,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_cached(source.path)
    config, state = load_checkpoint(source)
    assert is_cached(source.path)
    (entry,) = entries()
    assert entry.name == fingerprint(source.path)
    assert sorted(p.name for p in entry.iterdir()) == ["config.json", "model.safetensors", "source.json"]

    def no_reread(path: Path) -> None:
        raise AssertionError(f"the GGUF {path} was read again")

    monkeypatch.setattr(cache_mod, "read_gguf", no_reread)
    again_config, again = load_checkpoint(source)
    assert again_config == config and again.keys() == state.keys()
    for name in state:
        torch.testing.assert_close(again[name], state[name], atol=0, rtol=0)


def test_cached_weights_equal_a_direct_read_and_use_the_fused_layout(source: ModelSource) -> None:
    config, cached = load_checkpoint(source)
    _, direct = load_checkpoint(source, use_cache=False)
    assert "layers.0.attn.wqkv.weight" in cached and "layers.0.mlp.w_gate_up.weight" in cached
    ids = torch.tensor([[1, 2, 3, 50, 7]])
    with torch.inference_mode():
        torch.testing.assert_close(build_model(config, cached)(ids), build_model(config, direct)(ids), atol=0, rtol=0)


def test_build_model_maps_the_cached_weights_without_copying(source: ModelSource) -> None:
    config, state = load_checkpoint(source)
    model = build_model(config, state)
    assert model.layers[0].attn.wqkv.weight.data_ptr() == state["layers.0.attn.wqkv.weight"].data_ptr()


def test_changed_source_invalidates_its_entry(source: ModelSource, tiny_state: dict[str, torch.Tensor]) -> None:
    from tests.ulm.loading.conftest import TINY
    from tests.ulm.loading.gguf_files import write_gguf

    load_checkpoint(source)
    (old,) = entries()
    changed = {k: v * 2 if k == "norm.weight" else v for k, v in tiny_state.items()}
    write_gguf(source.path, TINY, changed)
    assert not is_cached(source.path)
    _, state = load_checkpoint(source)
    (new,) = entries()  # the stale entry of the same source was removed
    assert new != old
    torch.testing.assert_close(state["norm.weight"], changed["norm.weight"])


def test_touching_the_source_changes_its_fingerprint(source: ModelSource) -> None:
    before = fingerprint(source.path)
    st = source.path.stat()
    os.utime(source.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert fingerprint(source.path) != before


def test_failed_conversion_leaves_no_entry_and_a_later_load_works(source: ModelSource,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = cache_mod._write_entry

    def crash(tmp: Path, *args: object) -> None:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod, "_write_entry", crash)
    with pytest.raises(OSError, match="disk full"):
        load_checkpoint(source)
    assert entries() == [] and not is_cached(source.path)
    monkeypatch.setattr(cache_mod, "_write_entry", real_write)
    load_checkpoint(source)
    assert is_cached(source.path)


def test_bad_gguf_is_not_cached(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match=r"bad\.gguf"):
        load_checkpoint(ModelSource("bad", "gguf", bad))
    assert entries() == []


def test_dtype_is_applied_to_float_weights(source: ModelSource) -> None:
    _, state = load_checkpoint(source, torch.bfloat16)
    assert {t.dtype for t in state.values()} == {torch.bfloat16}


def test_abandoned_temp_dirs_are_cleaned_up_by_the_next_conversion(source: ModelSource) -> None:
    root = model_cache_dir()
    root.mkdir(parents=True)
    old, fresh = root / ".tmp-crashed-1", root / ".tmp-running-2"
    for d in (old, fresh):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"partial")
    os.utime(old, (1_000_000_000, 1_000_000_000))  # long ago: a crashed conversion
    load_checkpoint(source)
    assert not old.exists()
    assert fresh.exists()  # maybe another process converting right now: left alone
