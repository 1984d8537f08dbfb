"""ulm.loading.cache and checkpoint: one cache entry per source file holds everything derived from it (converted
weights, fast tensors, tokenizer); a GGUF is converted once and mapped afterwards; a changed source gets a
new entry and its stale one is removed; a damaged artefact is rebuilt; a failed write leaves no half artefact.

Run: .venv/bin/python -m pytest tests/ulm/loading/test_cache.py -q
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import ulm.loading.checkpoint as checkpoint_mod
from cb.paths import model_cache_dir
from tests.ulm.loading.conftest import TINY
from tests.ulm.loading.gguf_files import add_byte_level_tokenizer, write_gguf
from ulm import tokenizer as tkz
from ulm.errors import ModelLoadError
from ulm.fast import load_fast
from ulm.loading import cache, fingerprint, is_cached, load_checkpoint
from ulm.model import build_model
from ulm.registry import ModelSource


@pytest.fixture
def source(tiny_gguf: Path, tmp_path: Path) -> ModelSource:
    path = tmp_path / "model.gguf"
    shutil.copy2(tiny_gguf, path)
    return ModelSource("tiny", "gguf", path)


@pytest.fixture(scope="session")
def tokenized_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_state: dict[str, torch.Tensor]) -> Path:
    """The tiny model with a byte-level BPE tokenizer and a chat template in its metadata."""
    return write_gguf(tmp_path_factory.mktemp("tokenized") / "tiny.gguf", TINY, tiny_state,
                      extra_kv=add_byte_level_tokenizer)


@pytest.fixture
def tokenized(tokenized_gguf: Path, tmp_path: Path) -> ModelSource:
    path = tmp_path / "chat.gguf"
    shutil.copy2(tokenized_gguf, path)
    return ModelSource("chat", "gguf", path)


def entries() -> list[Path]:
    root = model_cache_dir()
    return sorted(root.iterdir()) if root.is_dir() else []


def test_first_load_converts_and_second_load_maps_the_cache(source: ModelSource,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_cached(source)
    config, state = load_checkpoint(source)
    assert is_cached(source)
    (entry,) = entries()
    assert entry.name == fingerprint(source)
    assert sorted(p.name for p in entry.iterdir()) == ["config.json", "model.safetensors", "source.json"]

    def no_reread(path: Path) -> None:
        raise AssertionError(f"the GGUF {path} was read again")

    monkeypatch.setattr(checkpoint_mod, "read_gguf", no_reread)
    again_config, again = load_checkpoint(source)
    assert again_config == config and again.keys() == state.keys()
    for name in state:
        torch.testing.assert_close(again[name], state[name], atol=0, rtol=0)


def test_one_entry_holds_the_weights_fast_tensors_and_tokenizer_of_a_source(tokenized: ModelSource,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    load_fast(tokenized)
    tok = tkz.load_tokenizer(tokenized)
    (entry,) = entries()
    assert entry.name == fingerprint(tokenized)
    assert sorted(p.name for p in entry.iterdir()) == ["config.json", "fast-int4-v1.safetensors", "model.safetensors",
                                                       "source.json", "tokenizer"]
    (item,) = cache.scan()
    assert (item.state, item.holds, item.source) == ("current", ("weights", "fast-int4-v1", "tokenizer"),
                                                     str(tokenized.path.resolve()))
    assert item.size_bytes == sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())

    def no_conversion(path: Path) -> None:
        raise AssertionError(f"{path} was converted again")

    monkeypatch.setattr(tkz, "_from_gguf", no_conversion)
    monkeypatch.setattr(checkpoint_mod, "read_gguf", no_conversion)
    assert tkz.load_tokenizer(tokenized)("the cat")["input_ids"] == tok("the cat")["input_ids"]
    load_fast(tokenized)


def test_changed_source_gets_a_new_entry_and_the_stale_one_goes_with_all_it_holds(
        tokenized: ModelSource, tiny_state: dict[str, torch.Tensor]) -> None:
    load_checkpoint(tokenized)
    tkz.load_tokenizer(tokenized)
    (old,) = entries()
    assert (old / "tokenizer").is_dir()
    changed = {k: v * 2 if k == "norm.weight" else v for k, v in tiny_state.items()}
    write_gguf(tokenized.path, TINY, changed, extra_kv=add_byte_level_tokenizer)
    assert not is_cached(tokenized) and cache.scan()[0].state == "source changed"
    _, state = load_checkpoint(tokenized)
    (new,) = entries()  # the stale entry of the same source was removed, tokenizer and all
    assert new != old and new.name == fingerprint(tokenized)
    torch.testing.assert_close(state["norm.weight"], changed["norm.weight"])


def test_touching_the_source_changes_its_fingerprint(source: ModelSource) -> None:
    before = fingerprint(source)
    st = source.path.stat()
    os.utime(source.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert fingerprint(source) != before


def test_the_fingerprint_covers_the_first_and_last_mib(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"a" * (3 << 20))
    st, source = path.stat(), ModelSource("m", "gguf", path)
    first = fingerprint(source)
    assert fingerprint(source) == first
    for at in (0, (3 << 20) - 1):  # same size and mtime, one byte changed at either end (and changed back)
        for byte, same in ((b"b", False), (b"a", True)):
            with path.open("r+b") as f:
                f.seek(at)
                f.write(byte)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            assert (fingerprint(source) == first) is same


def test_a_gguf_in_pieces_is_keyed_by_its_pinned_hash(tmp_path: Path) -> None:
    pieces = tuple(tmp_path / f"part{i}.bin" for i in (1, 2))
    for piece in pieces:
        piece.write_bytes(b"x" * 100)
    source = ModelSource("parted", "gguf", pieces[0], pieces, 200, "ab" * 32)
    before = fingerprint(source)
    os.utime(pieces[0], (1_000_000_000, 1_000_000_000))  # the pieces' bytes are checked by ulm.loading.verified
    assert fingerprint(source) == before
    assert fingerprint(ModelSource("parted", "gguf", pieces[0], pieces, 200, "cd" * 32)) != before  # a new pin
    cache.save_artefact(source, "note", lambda where: where.write_text("hi", encoding="utf-8"))
    (item,) = cache.scan()
    assert (item.id, item.source, item.pieces, item.state) == (fingerprint(source), str(pieces[0]), 2, "current")
    pieces[1].unlink()
    assert cache.scan()[0].state == "source gone"


@pytest.mark.parametrize("damage", ["config.json", "model.safetensors"])
def test_a_damaged_converted_checkpoint_is_converted_again(source: ModelSource, damage: str) -> None:
    state = {k: v.clone() for k, v in load_checkpoint(source)[1].items()}  # copies: the file is cut in place below
    (entry,) = entries()
    (entry / damage).write_bytes(b"{not json, nor safetensors")
    _, again = load_checkpoint(source)
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)
    assert entries() == [entry] and (entry / damage).stat().st_size > 30


def test_a_damaged_tokenizer_is_built_again(tokenized: ModelSource) -> None:
    want = tkz.load_tokenizer(tokenized)("the cat")["input_ids"]
    (entry,) = entries()
    (entry / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0", "model": ', encoding="utf-8")
    assert tkz.load_tokenizer(tokenized)("the cat")["input_ids"] == want
    assert (entry / "tokenizer" / "tokenizer.json").stat().st_size > 1000
    assert [p.name for p in entry.iterdir() if p.name.startswith(".tmp-")] == []


def test_a_failed_write_leaves_no_half_artefact_and_a_later_load_works(source: ModelSource,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    real_save = safetensors.torch.save_file

    def crash(tensors: object, where: str, *args: object) -> None:
        Path(where).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        load_checkpoint(source)
    (entry,) = entries()
    assert [p.name for p in entry.iterdir()] == ["source.json"] and not is_cached(source)
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    load_checkpoint(source)
    assert is_cached(source)


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


def test_bad_gguf_is_not_cached(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match=r"bad\.gguf"):
        load_checkpoint(ModelSource("bad", "gguf", bad))
    assert entries() == []


def test_dtype_is_applied_to_float_weights(source: ModelSource) -> None:
    _, state = load_checkpoint(source, torch.bfloat16)
    assert {t.dtype for t in state.values()} == {torch.bfloat16}


def test_abandoned_temp_dirs_are_cleaned_up_when_an_entry_is_made(source: ModelSource) -> None:
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


def test_prune_picks_gone_changed_unknown_and_abandoned_items(source: ModelSource, tmp_path: Path) -> None:
    load_checkpoint(source)
    gone = ModelSource("gone", "gguf", tmp_path / "gone.gguf")
    shutil.copy2(source.path, gone.path)
    load_checkpoint(gone)
    gone.path.unlink()
    root = model_cache_dir()
    (root / "tokenizers").mkdir()  # the tokenizer cache of the previous layout
    (current,) = [p for p in entries() if p.name == fingerprint(source)]
    stuck = current / ".tmp-model.safetensors-x"
    stuck.mkdir()
    os.utime(stuck, (1_000_000_000, 1_000_000_000))
    states = {item.id: item.state for item in cache.scan()}
    assert states[current.name] == "current" and states["tokenizers"] == "unknown"
    assert sorted(states.values()) == ["current", "source gone", "unknown"]
    doomed = {item.path for item in cache.prunable(cache.scan())}
    assert doomed == {root / "tokenizers", stuck} | {p for p in entries() if states[p.name] == "source gone"}
    assert {item.path for item in cache.prunable(cache.scan(), everything=True)} == set(entries())
