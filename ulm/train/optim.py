"""AdamW with decay groups, and the learning-rate schedule.

- `param_groups(model, weight_decay)`: weight decay on the matrices of attention, MLP and an untied LM head;
  none on norms, biases and the token embedding (tied or not), which decay would only pull towards zero.
- `build_optimizer(model, train, device)`: torch's AdamW over those groups (fused kernels on CUDA).
- `lr_at(step, train)`: the rate for optimiser step `step` (0-based): a linear warm-up over `warmup_steps`,
  then cosine from lr to lr·min_lr_ratio over the remaining steps; or WSD (warm-up, stable at lr, then a
  linear decay to lr·min_lr_ratio over the last `decay_fraction` of the steps); or constant.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ulm.train.config import TrainConfig

NO_DECAY_NAMES = ("embed.weight", "embed_tokens.weight")  # µLM's and HF's token embedding


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """[decayed, not decayed] parameter groups (each parameter once, tied weights included)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and not name.endswith(NO_DECAY_NAMES) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, train: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over `param_groups`, with the run's betas and eps (fused on CUDA)."""
    return torch.optim.AdamW(param_groups(model, train.weight_decay), lr=lr_at(0, train), betas=train.betas,
                             eps=train.adam_eps, fused=device.type == "cuda")


def lr_at(step: int, train: TrainConfig) -> float:
    """The learning rate of optimiser step `step` (see the module docstring)."""
    peak, low = train.lr, train.lr * train.min_lr_ratio
    if step < train.warmup_steps:
        return peak * (step + 1) / train.warmup_steps
    if train.schedule == "constant":
        return peak
    if train.schedule == "wsd":
        decay_steps = max(1, round(train.decay_fraction * train.steps))
        decay_start = max(train.warmup_steps, train.steps - decay_steps)
        if step < decay_start:
            return peak
        progress = min(1.0, (step - decay_start + 1) / max(1, train.steps - decay_start))
        return peak + (low - peak) * progress
    span = max(1, train.steps - train.warmup_steps - 1)
    progress = min(1.0, (step - train.warmup_steps) / span)
    return low + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - low)
