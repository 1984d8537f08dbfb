"""The tiny run config the training and conversion tests train with."""

from __future__ import annotations

from typing import Any

from ulm.train.config import RunConfig
from ulm.train.presets import preset


def tiny_run(model: dict[str, Any] | None = None, **train: Any) -> RunConfig:
    """The tiny preset with the small tokenizer's vocabulary (512) and short, quick steps; `train` changes
    TrainConfig fields, `model` ModelConfig fields."""
    base = preset("tiny")
    defaults = dict(steps=12, seq_len=32, batch_size=8, micro_batch=4, warmup_steps=3, log_every=1, eval_every=6,
                    eval_sequences=8, save_every=0)
    return RunConfig(base.model.with_(vocab_size=512, **(model or {})), base.train.with_(**{**defaults, **train}),
                     "tiny")
