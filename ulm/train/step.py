"""One optimiser step: micro-batches forward and backward (gradients accumulated), clip, AdamW.

- `LossModule(model)`: forward(ids, targets) → the summed cross-entropy over targets ≠ IGNORE (fp32
  logits). It wraps µLM's Transformer (logits) and HF's LlamaForCausalLM (an output with .logits) alike, so
  `ulm bench train` runs both through this same step; it is what torch.compile and DDP wrap.
- `optimizer_step(...)`: each micro-batch's summed loss is scaled by world / n_targets (n_targets: trained
  targets in the whole global batch, over all ranks), so after DDP averages the gradients over the ranks
  they are those of the mean loss over the global batch, whatever the number of ranks or micro-steps.
  DDP's gradient all-reduce runs once, on the last micro-step (`no_sync` before). Returns this rank's summed
  loss and the gradient norm as tensors (reading them syncs the GPU; the caller does so only when logging).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ulm.train.batches import IGNORE, MicroBatch


class LossModule(nn.Module):
    """Summed next-token cross-entropy of a causal LM over the trained targets."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        out = self.model(ids)
        logits = out if isinstance(out, torch.Tensor) else out.logits  # [B, T, V]
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum")


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on `device` when asked, else nothing."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def to_device(batch: MicroBatch, device: torch.device) -> MicroBatch:
    """A micro-batch on `device` (pinned and copied asynchronously to a GPU)."""
    ids, targets = batch
    if ids.device == device:
        return ids, targets
    if device.type == "cuda":
        return ids.pin_memory().to(device, non_blocking=True), targets.pin_memory().to(device, non_blocking=True)
    return ids, targets


def optimizer_step(module: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: Sequence[MicroBatch],
                   n_targets: int, world: int, lr: float, grad_clip: float, device: torch.device,
                   bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one optimiser step over this rank's micro-batches; (summed loss, gradient norm) as tensors."""
    sync = getattr(module, "no_sync", None)  # DistributedDataParallel
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = torch.zeros((), device=device)
    for i, batch in enumerate(micro_batches):
        ids, targets = to_device(batch, device)
        accumulate = sync is not None and i < len(micro_batches) - 1
        with sync() if accumulate else contextlib.nullcontext():
            with autocast(device, bf16):
                loss = module(ids, targets)
            (loss * (world / max(1, n_targets))).backward()
        total += loss.detach()
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, norm


@torch.no_grad()
def evaluate(module: nn.Module, batches: Sequence[MicroBatch], device: torch.device,
             bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, trained targets) of this rank's validation batches, as tensors."""
    total = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    for batch in batches:
        ids, targets = to_device(batch, device)
        with autocast(device, bf16):
            total += module(ids, targets).double()
        count += (targets != IGNORE).sum()
    return total, count
