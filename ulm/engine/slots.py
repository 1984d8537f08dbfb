"""Slots: the engine's `--parallel` seats, one KV cache row each, and the per-request state of whoever
sits there. A slot remembers which tokens its cache row holds after a request leaves, so the next
request whose prompt starts the same way only prefills the rest (prefix reuse).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ulm.engine.textout import TextOutput

if TYPE_CHECKING:
    from ulm.engine.types import GenRequest, Sink


@dataclass
class Ticket:
    """A submitted request as the engine tracks it, from the queue to its Finished/Failed event."""

    request: GenRequest
    sink: Sink
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # set from any thread; the worker acts on it within one step


@dataclass
class Active:
    """The running part of a request that holds a slot."""

    ticket: Ticket
    text: TextOutput
    max_new: int  # min(request max_tokens, room left in the context)
    cached: int  # prompt tokens reused from the slot's cache row
    prefilled: int = 0  # prompt tokens already in the cache row (cached included)
    generated: list[int] = field(default_factory=list)
    t_prefill_start: float = 0.0
    t_first_token: float = 0.0
    t_last_token: float = 0.0


@dataclass
class Slot:
    """One KV cache row. `tokens` are the ids whose keys/values the row holds, in order."""

    row: int
    tokens: list[int] = field(default_factory=list)
    active: Active | None = None
    last_used: float = 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pick_slot(free: list[Slot], prompt: list[int]) -> tuple[Slot, int]:
    """The free slot whose cached tokens share the longest prefix with the prompt (least recently used on
    ties), and how many prompt tokens it can reuse: at least one token is always prefilled, since the
    first new token needs the logits of the prompt's last position."""
    best = max(free, key=lambda s: (common_prefix(s.tokens, prompt), -s.last_used))
    return best, min(common_prefix(best.tokens, prompt), len(prompt) - 1)
