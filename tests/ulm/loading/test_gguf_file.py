"""µLM's GGUF reader agrees with gguf.GGUFReader on every field and tensor, and names what is wrong with a
damaged file."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.support.checkpoints import embedded_gguf_path
from ulm.loading.gguf_file import GGUFFile, write_metadata_only


def _same_value(a: object, b: object) -> bool:
    if isinstance(b, np.ndarray):
        b = b.tolist()
    return a == b or (isinstance(a, float) and isinstance(b, float) and abs(a - b) < 1e-6)


@pytest.mark.parametrize("which", ["tiny", "embedded"])
def test_reader_matches_gguf_package(which: str, tiny_gguf: Path) -> None:
    path = tiny_gguf if which == "tiny" else embedded_gguf_path()
    ref, ours = gguf.GGUFReader(str(path)), GGUFFile.open(path)
    fields = {k: f.contents() for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert fields.keys() == ours.fields.keys()
    assert all(_same_value(v, ours.fields[k]) for k, v in fields.items())
    assert [t.name for t in ref.tensors] == [t.name for t in ours.tensors]
    for a, b in zip(ref.tensors, ours.tensors, strict=True):
        assert (a.tensor_type, tuple(int(d) for d in a.shape), a.data_offset) == (b.tensor_type, b.shape, b.offset)
        assert a.data.shape == b.data.shape and np.array_equal(np.asarray(a.data), b.data)


def test_metadata_only_copy_keeps_every_field(tiny_gguf: Path, tmp_path: Path) -> None:
    src = GGUFFile.open(tiny_gguf)
    write_metadata_only(src, tmp_path / "meta.gguf")
    copy = GGUFFile.open(tmp_path / "meta.gguf")
    assert copy.tensors == []
    assert all(_same_value(src.fields[k], copy.fields[k]) for k in src.fields)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b"GGML" + b[4:], "magic"),
    (lambda b: b[:4] + (9).to_bytes(4, "little") + b[8:], "version 9"),
    (lambda b: b[: len(b) // 2], "cut short|truncated"),
    (lambda b: b[:40], "truncated"),
])
def test_damaged_files_name_what_is_wrong(tiny_gguf: Path, tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(damage(tiny_gguf.read_bytes()))
    with pytest.raises(ValueError, match=message):
        GGUFFile.open(bad)
