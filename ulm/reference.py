"""The naive uncached greedy loop: the oracle that the engine's cached, batched generation is tested against."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ulm.model import Transformer


@torch.inference_mode()
def reference_greedy(model: Transformer, ids: Sequence[int], n: int, stop_token_ids: Sequence[int] = ()) -> list[int]:
    """`n` greedy tokens after `ids` (fewer when a stop token comes), the whole sequence re-run every step."""
    seq = list(ids)
    out: list[int] = []
    for _ in range(n):
        logits = model(torch.tensor([seq], dtype=torch.long, device=model.device))  # [1, T, V]
        token = int(logits[0, -1].argmax())
        out.append(token)
        if token in stop_token_ids:
            break
        seq.append(token)
    return out
