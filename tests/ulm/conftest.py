"""Fixtures shared by µLM's pipeline tests (data, train, convert): a small real corpus (standard-library source),
a small tokenizer learned from it (so a tiny model trains in seconds), and the dataset built from both."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CORPUS_MODULES = ("json", "textwrap.py", "string.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py", "heapq.py",
                  "colorsys.py", "keyword.py")


@pytest.fixture(scope="session")
def stdlib_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a copy of a few standard-library modules (about 150 KB of Python)."""
    root = tmp_path_factory.mktemp("stdlib_corpus")
    for name in CORPUS_MODULES:
        src = STDLIB / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(src, root / name)
    return root


@pytest.fixture(scope="session")
def small_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, stdlib_corpus: Path) -> Path:
    """A 512-token byte-level BPE (ChatML template) learned from the corpus."""
    from tests.support.small_tokenizer import save_small_bpe

    texts = [p.read_text(encoding="utf-8") for p in sorted(stdlib_corpus.rglob("*.py"))]
    return save_small_bpe(tmp_path_factory.mktemp("small_tokenizer"), texts)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, stdlib_corpus: Path, small_tokenizer_dir: Path) -> Path:
    """The corpus built with the 512-token tokenizer, a fifth of the documents held out."""
    from ulm.data.build import BuildOptions, build_dataset

    out = tmp_path_factory.mktemp("datasets") / "stdlib"
    build_dataset([str(stdlib_corpus)], out, BuildOptions(tokenizer=str(small_tokenizer_dir), val_fraction=0.2))
    return out
