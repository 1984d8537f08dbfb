"""Checkpoints of a run: everything needed to continue it exactly, in a directory `ulm.load` also reads.

    OUT/checkpoints/step-00000500/
        config.json, model.safetensors, tokenizer files    a µLM model directory (ulm/convert/modeldir.py), fp32
        optimizer.pt                                       AdamW's state_dict (moments, step counts)
        rng.pt                                             torch CPU (+ CUDA), numpy and Python RNG states
        trainer.json                                       step, sequences consumed, tokens, the RunConfig,
                                                           the dataset's tokenizer id and train tokens, world size
    OUT/config.json, OUT/model.safetensors, tokenizer files
                                                           the newest checkpoint's model files (hard links),
                                                           so `ulm.load(OUT)` gives the latest model

A checkpoint is written into `.tmp-step-…` and renamed when complete (trainer.json last), so a crash never
leaves half of one under a real name; `latest` takes the highest complete step. After a save, all but the
newest `keep` are removed. Only rank 0 calls `save`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ulm.config import ModelConfig
from ulm.convert.modeldir import write_model_dir
from ulm.errors import ModelLoadError
from ulm.model import Transformer, to_canonical

CHECKPOINTS = "checkpoints"
OPTIMIZER = "optimizer.pt"
RNG = "rng.pt"
TRAINER = "trainer.json"


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / CHECKPOINTS / f"step-{step:08d}"


def rng_state() -> dict[str, Any]:
    """Every RNG a run could draw from."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore `rng_state()`'s output (CUDA states only where there are as many GPUs)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _link_into(src: Path, dst: Path) -> None:
    """dst becomes a hard link to src (a copy where links fail), replacing dst atomically."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save(out: Path, step: int, model: Transformer, optimizer: torch.optim.Optimizer, trainer: dict[str, Any],
         tokenizer_dir: Path | None, keep: int) -> Path:
    """Write the checkpoint of `step` (see the module docstring); its directory."""
    final = checkpoint_dir(out, step)
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    state = {k: v.detach().float() for k, v in to_canonical(model).items()}
    write_model_dir(tmp, model.config, state, tokenizer_dir)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    torch.save(rng_state(), tmp / RNG)
    (tmp / TRAINER).write_text(json.dumps(trainer, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    for f in sorted(final.iterdir()):
        if f.name not in (OPTIMIZER, RNG, TRAINER):
            _link_into(f, out / f.name)
    for old in complete_checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(out: Path) -> list[Path]:
    """The complete checkpoints under OUT, oldest first."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / TRAINER).is_file())


def latest(out: Path) -> Path | None:
    found = complete_checkpoints(out)
    return found[-1] if found else None


@dataclass
class Restored:
    """A checkpoint read back for resuming."""

    path: Path
    config: ModelConfig
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    trainer: dict[str, Any]


def restore(path: Path, map_location: torch.device | str = "cpu") -> Restored:
    """Everything `save` wrote into `path`; ModelLoadError when a part is missing or damaged."""
    from ulm.loading.hf import read_hf

    try:
        trainer = json.loads((path / TRAINER).read_text(encoding="utf-8"))
        config, weights = read_hf(path)
        optimizer = torch.load(path / OPTIMIZER, map_location=map_location, weights_only=True)
        rng = torch.load(path / RNG, weights_only=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{path}: damaged checkpoint ({str(e).splitlines()[0][:200]})") from None
    return Restored(path, config, dict(weights), optimizer, rng, trainer)

