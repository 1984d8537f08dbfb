"""`ulm.data.build`: sources (files, dirs, globs, git work trees), skips, exact de-duplication, the split by
content hash, byte-identical shards, the shard reader, and the errors for bad input.

Run: .venv/bin/python -m pytest tests/ulm/data/test_build.py -q
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ulm.data.build import BuildOptions, build_dataset, split_of
from ulm.data.dataset import open_dataset
from ulm.data.errors import DataError
from ulm.data.manifest import read_manifest
from ulm.data.tokenizers import token_dtype


def build(sources: list[str | Path], out: Path, tokenizer: Path, **options: object) -> dict:
    return build_dataset([str(s) for s in sources], out, BuildOptions(tokenizer=str(tokenizer), **options))


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix in (".bin", ".mask", ".idx")}


def test_the_same_inputs_give_byte_identical_shards(tmp_path: Path, stdlib_corpus: Path,
                                                    small_tokenizer_dir: Path) -> None:
    copy = shutil.copytree(stdlib_corpus, tmp_path / "elsewhere")  # other paths, other mtimes, same content
    first = build([stdlib_corpus], tmp_path / "a", small_tokenizer_dir, val_fraction=0.2, shard_tokens=5000)
    second = build([copy], tmp_path / "b", small_tokenizer_dir, val_fraction=0.2, shard_tokens=5000)
    a, b = shard_bytes(tmp_path / "a"), shard_bytes(tmp_path / "b")
    assert len([n for n in a if n.startswith("train-")]) > 3  # several shards
    assert a == b
    assert first["splits"] == second["splits"]  # shard sha256s included
    assert (tmp_path / "a" / "documents.jsonl").read_text() == (tmp_path / "b" / "documents.jsonl").read_text()


def test_shards_hold_each_document_tokenized_then_the_separator(tmp_path: Path, stdlib_corpus: Path,
                                                                 small_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    build([stdlib_corpus / "json"], tmp_path / "d", small_tokenizer_dir, val_fraction=0.0, shard_tokens=777)
    tok = AutoTokenizer.from_pretrained(str(small_tokenizer_dir))
    ds = open_dataset(tmp_path / "d")
    records = [json.loads(line) for line in (tmp_path / "d" / "documents.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == sorted(p.name for p in (stdlib_corpus / "json").glob("*.py"))
    sep = tok.convert_tokens_to_ids("<|endoftext|>")
    for i, record in enumerate(records):
        start, end = int(ds.train.doc_starts[i]), int(ds.train.doc_starts[i + 1])
        expected = tok((stdlib_corpus / "json" / record["path"]).read_text(), add_special_tokens=False)["input_ids"]
        assert ds.train.tokens(start, end - start).tolist() == [*expected, sep]  # reads cross shard borders
    assert ds.train.n_tokens == sum(r["tokens"] for r in records) == int(ds.train.doc_starts[-1])
    assert not ds.train.has_mask and ds.train.mask(0, 5).all()


def test_exact_duplicates_are_dropped_and_the_split_follows_the_content_not_the_order(
        tmp_path: Path, stdlib_corpus: Path, small_tokenizer_dir: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copyfile(stdlib_corpus / "shlex.py", extra / "renamed_copy.py")
    (extra / "new.py").write_text("print('only here')\n")
    m1 = build([stdlib_corpus, extra], tmp_path / "one", small_tokenizer_dir, val_fraction=0.3)
    m2 = build([extra, stdlib_corpus], tmp_path / "two", small_tokenizer_dir, val_fraction=0.3)
    assert m1["duplicates"] == m2["duplicates"] == 1
    assert m1["sources"][1]["duplicates"] == 1 and m2["sources"][0]["duplicates"] == 0

    def split_by_hash(directory: Path) -> dict[str, str]:
        lines = (directory / "documents.jsonl").read_text().splitlines()
        return {r["hash"]: r["split"] for r in map(json.loads, lines)}

    one, two = split_by_hash(tmp_path / "one"), split_by_hash(tmp_path / "two")
    assert one == two and {"train", "val"} == set(one.values())
    assert all(split_of(h, 0.3) == s for h, s in one.items())


def test_skipped_files_are_listed_with_their_reason(tmp_path: Path, small_tokenizer_dir: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.py").write_text("x = 1\n")
    (src / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (src / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (src / "empty.txt").write_text("  \n")
    (src / "big.txt").write_text("y" * 5000)
    (src / "link.py").symlink_to(src / "good.py")
    (src / ".hidden").write_text("never read\n")
    manifest = build([src], tmp_path / "d", small_tokenizer_dir, val_fraction=0.0, max_file_bytes=4096)
    reasons = {Path(s["path"]).name: s["reason"] for s in manifest["skipped"]}
    assert reasons == {"image.png": "binary", "latin1.txt": "not UTF-8", "empty.txt": "empty",
                       "big.txt": "larger than 4096 bytes", "link.py": "symlink"}
    assert manifest["splits"]["train"]["documents"] == 1


def test_a_git_work_tree_is_read_as_git_sees_it(tmp_path: Path, small_tokenizer_dir: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "build").mkdir()
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "pkg" / "tracked.py").write_text("def f():\n    return 1\n")
    (repo / "untracked.py").write_text("y = 2\n")
    (repo / "debug.log").write_text("noise\n")
    (repo / "build" / "out.py").write_text("generated = True\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "pkg/tracked.py", ".gitignore"], check=True)
    manifest = build([repo], tmp_path / "d", small_tokenizer_dir, val_fraction=0.0)
    paths = [json.loads(line)["path"] for line in (tmp_path / "d" / "documents.jsonl").read_text().splitlines()]
    assert manifest["sources"][0]["kind"] == "git"
    assert paths == [".gitignore", "pkg/tracked.py", "untracked.py"]


def test_globs_and_include_exclude_pick_files(tmp_path: Path, stdlib_corpus: Path, small_tokenizer_dir: Path) -> None:
    manifest = build([f"{stdlib_corpus}/*.py"], tmp_path / "g", small_tokenizer_dir, val_fraction=0.0,
                     exclude=("s*.py",))
    lines = (tmp_path / "g" / "documents.jsonl").read_text().splitlines()
    paths = [Path(json.loads(line)["path"]).name for line in lines]
    assert manifest["sources"][0]["kind"] == "glob"
    assert paths == sorted(p.name for p in stdlib_corpus.glob("*.py") if not p.name.startswith("s"))
    build([stdlib_corpus], tmp_path / "i", small_tokenizer_dir, val_fraction=0.0, include=("json/*",))
    paths = [json.loads(line)["path"] for line in (tmp_path / "i" / "documents.jsonl").read_text().splitlines()]
    assert paths and all(p.startswith("json/") for p in paths)


BAD_INPUTS = {  # id: (files to write, sources, the error message)
    "missing": ({}, ["missing"], "no such file or directory"),
    "glob": ({}, ["*.nothing"], "no file matches"),
    "json-line": ({"bad.jsonl": '{"text": "ok"}\n{oops\n'}, ["bad.jsonl"], "bad.jsonl:2: not valid JSON"),
    "jsonl-shape": ({"odd.jsonl": '{"prompt": "x"}\n'}, ["odd.jsonl"], "odd.jsonl:1: a JSONL line must be"),
    "no-assistant": ({"q.jsonl": '{"messages": [{"role": "user", "content": "hi"}]}\n'}, ["q.jsonl"],
                     "no assistant message"),
    "role": ({"r.jsonl": '{"messages": [{"role": "robot", "content": "hi"}]}\n'}, ["r.jsonl"], "needs a role"),
    "empty-result": ({"bin.dat": "\0\1\2"}, ["bin.dat"], "no documents to train on: every file was left out"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path: Path, small_tokenizer_dir: Path, case: str) -> None:
    files, sources, message = BAD_INPUTS[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message):
        build([tmp_path / s for s in sources], tmp_path / "out", small_tokenizer_dir)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]  # the temp dir is gone too


def test_a_missing_tokenizer_or_an_occupied_out_dir_is_refused(tmp_path: Path, stdlib_corpus: Path,
                                                              small_tokenizer_dir: Path) -> None:
    with pytest.raises(DataError, match="tokenizer 'nope-model'"):
        build([stdlib_corpus], tmp_path / "out", Path("nope-model"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        build([stdlib_corpus], tmp_path / "taken", small_tokenizer_dir)
    with pytest.raises(DataError, match="not a dataset"):
        build([stdlib_corpus], tmp_path / "taken", small_tokenizer_dir, overwrite=True)
    assert (tmp_path / "taken" / "precious.txt").read_text() == "keep me"
    build([stdlib_corpus / "json"], tmp_path / "ds", small_tokenizer_dir)
    build([stdlib_corpus / "glob.py"], tmp_path / "ds", small_tokenizer_dir, val_fraction=0.0, overwrite=True)
    assert read_manifest(tmp_path / "ds")["sources"][0]["arg"].endswith("glob.py")


def test_token_dtype_follows_the_vocabulary_size() -> None:
    assert token_dtype(49152) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(151936) == np.uint32
