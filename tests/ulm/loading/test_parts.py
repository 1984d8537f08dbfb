"""A GGUF in pieces: mapped back to back equals the joined file, hashes are enforced, joining survives an
interruption, and a model in pieces loads exactly like the same GGUF as one file."""

from __future__ import annotations

import hashlib
import mmap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.parted import cut, install_pieces
from ulm.errors import ModelLoadError
from ulm.loading.gguf import read_gguf, read_gguf_blocks
from ulm.loading.parts import HashMismatchError, PartsError, PartsNotMappable, join_parts, map_parts, verify_parts
from ulm.loading.verified import ensure_verified, is_verified

PAGE = mmap.PAGESIZE


def _pieces(tmp_path: Path, data: bytes, sizes: list[int]) -> list[Path]:
    paths = []
    for i, piece in enumerate(cut(data, sizes)):
        p = tmp_path / f"piece{i}.bin"
        p.write_bytes(piece)
        paths.append(p)
    return paths


@pytest.fixture
def blob() -> bytes:
    return np.random.default_rng(0).integers(0, 256, 5 * PAGE + 123, dtype=np.uint8).tobytes()


def test_pieces_map_back_to_back_as_the_joined_bytes(tmp_path: Path, blob: bytes) -> None:
    paths = _pieces(tmp_path, blob, [2 * PAGE, PAGE, PAGE])
    view = map_parts(paths, len(blob))
    assert view.tobytes() == blob
    view[0] ^= 0xFF  # copy-on-write: a write to the view never reaches the piece
    assert paths[0].read_bytes()[0] == blob[0]


def test_a_piece_of_odd_size_cannot_be_mapped(tmp_path: Path, blob: bytes) -> None:
    with pytest.raises(PartsNotMappable):
        map_parts(_pieces(tmp_path, blob, [PAGE + 1, PAGE]))


def test_wrong_total_or_missing_piece_is_one_clear_error(tmp_path: Path, blob: bytes) -> None:
    paths = _pieces(tmp_path, blob, [PAGE, PAGE])
    with pytest.raises(PartsError, match=r"hold .* bytes, the model file has"):
        map_parts(paths, len(blob) + 1)
    paths[1].unlink()
    with pytest.raises(PartsError, match="missing model piece"):
        map_parts(paths)


def test_verify_refuses_pieces_that_are_not_the_pinned_file(tmp_path: Path, blob: bytes) -> None:
    paths = _pieces(tmp_path, blob, [PAGE, PAGE])
    verify_parts(paths, len(blob), hashlib.sha256(blob).hexdigest())
    with pytest.raises(HashMismatchError, match="do not match the pinned sha256"):
        verify_parts(paths, len(blob), hashlib.sha256(b"other").hexdigest())


def test_join_is_resumed_after_an_interruption_and_nothing_corrupt_is_left(tmp_path: Path, blob: bytes) -> None:
    paths = _pieces(tmp_path, blob, [PAGE, PAGE, PAGE, PAGE])
    sha = hashlib.sha256(blob).hexdigest()
    out = tmp_path / "joined.gguf"

    def crash_after_two_pieces(done: int, total: int) -> None:
        if done > 2 * PAGE:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        join_parts(paths, out, len(blob), sha, crash_after_two_pieces)
    assert not out.exists()  # only a partial file, never the target
    seen: list[int] = []
    assert join_parts(paths, out, len(blob), sha, lambda done, total: seen.append(done)) == out
    assert out.read_bytes() == blob
    assert seen[0] == 2 * PAGE  # the two recorded pieces were kept (re-hashed at once), not copied again
    assert not list(tmp_path.glob("joined.gguf.partial*"))


def test_a_damaged_partial_join_is_caught_and_removed(tmp_path: Path, blob: bytes) -> None:
    paths = _pieces(tmp_path, blob, [PAGE, PAGE, PAGE])
    sha = hashlib.sha256(blob).hexdigest()
    out = tmp_path / "joined.gguf"
    with pytest.raises(KeyboardInterrupt):
        join_parts(paths, out, len(blob), sha, lambda done, total: (_ for _ in ()).throw(KeyboardInterrupt)
                   if done > PAGE else None)
    partial = tmp_path / "joined.gguf.partial"
    damaged = bytearray(partial.read_bytes())
    damaged[10] ^= 0xFF
    partial.write_bytes(bytes(damaged))
    with pytest.raises(HashMismatchError):
        join_parts(paths, out, len(blob), sha)
    assert not out.exists() and not partial.exists()
    assert join_parts(paths, out, len(blob), sha).read_bytes() == blob  # and a clean retry succeeds


@pytest.fixture
def parted_tiny(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The tiny GGUF cut into page-sized pieces, each in its own installed distribution."""
    data = tiny_gguf.read_bytes()
    assert len(data) > 3 * PAGE
    model = install_pieces(tmp_path / "site", "tiny-in-pieces", cut(data, [PAGE, 2 * PAGE]))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return model


def test_a_model_in_pieces_loads_like_the_one_file(parted_tiny, tiny_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    source = parted_tiny.source()
    assert len(source.parts) == 3 and not is_verified(source)
    config, state = read_gguf(source)
    ref_config, ref_state = read_gguf(tiny_gguf)
    assert config == ref_config and state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state)
    blocks = read_gguf_blocks(source)[1]
    ref_blocks = read_gguf_blocks(tiny_gguf)[1]
    assert all(np.array_equal(blocks[k].blocks, ref_blocks[k].blocks) for k in blocks)
    assert is_verified(source)  # hashed once, trusted afterwards


def test_a_touched_piece_is_hashed_again_and_a_changed_one_refused(parted_tiny) -> None:  # type: ignore[no-untyped-def]
    source = parted_tiny.source()
    ensure_verified(source)
    last = source.parts[-1]
    data = bytearray(last.read_bytes())
    data[-1] ^= 0xFF
    last.write_bytes(bytes(data))
    assert not is_verified(source)
    with pytest.raises(ModelLoadError, match=r"tiny-in-pieces: .*pinned sha256"):
        read_gguf(source)
