"""A small real dataset (standard-library source, the small BPE) and a tiny run config for the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ulm.train.config import RunConfig
from ulm.train.presets import preset


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, stdlib_corpus: Path, small_tokenizer_dir: Path) -> Path:
    """The corpus built with the 512-token tokenizer, a fifth of the documents held out."""
    from ulm.data.build import BuildOptions, build_dataset

    out = tmp_path_factory.mktemp("datasets") / "stdlib"
    build_dataset([str(stdlib_corpus)], out, BuildOptions(tokenizer=str(small_tokenizer_dir), val_fraction=0.2))
    return out


def tiny_run(model: dict[str, Any] | None = None, **train: Any) -> RunConfig:
    """The tiny preset with the small vocabulary and short, quiet steps; `train` changes TrainConfig fields."""
    base = preset("tiny")
    defaults = dict(steps=12, seq_len=32, batch_size=8, micro_batch=4, warmup_steps=3, log_every=1, eval_every=6,
                    eval_sequences=8, save_every=0)
    return RunConfig(base.model.with_(vocab_size=512, **(model or {})), base.train.with_(**{**defaults, **train}),
                     "tiny")
