"""Slots: the engine's seats, one KV cache row each, and the per-request state of whoever sits there. A
slot remembers which tokens its cache row holds after a request leaves, so the next request whose prompt
starts the same way only prefills the rest (prefix reuse); `common_prefix` is the one prefix match.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ulm.engine.textout import TextOutput

if TYPE_CHECKING:
    from ulm.engine.types import Request, Sink


@dataclass(eq=False)
class Ticket:
    """A submitted request as the engine tracks it, from the queue to its finish (or Failed)."""

    request: Request
    sink: Sink
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # set from any thread; the engine acts on it within one step


@dataclass
class Active:
    """The running part of a request that holds a slot. Times are on the engine's clock (seconds)."""

    ticket: Ticket
    text: TextOutput
    stop_ids: frozenset[int]
    max_new: int  # min(request max_tokens, room left in the context)
    cached: int  # prompt tokens reused from the slot's cache row
    prefilled: int = 0  # prompt tokens already in the cache row (cached included)
    generated: list[int] = field(default_factory=list)
    t_seated: float = 0.0
    t_first_token: float = 0.0
    t_last_token: float = 0.0


@dataclass
class Slot:
    """One KV cache row. `tokens` are the ids whose keys/values the row holds, in order."""

    row: int
    tokens: list[int] = field(default_factory=list)
    active: Active | None = None
    last_used: float = 0.0


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids a and b share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pick_slot(free: list[Slot], prompt: list[int]) -> tuple[Slot, int]:
    """The free slot whose cached tokens share the longest prefix with the prompt (least recently used on
    ties), and how many prompt tokens it can reuse: at least one token is always prefilled, since the
    first new token needs the logits of the prompt's last position."""
    shared = [common_prefix(s.tokens, prompt) for s in free]
    best = max(range(len(free)), key=lambda i: (shared[i], -free[i].last_used))
    return free[best], min(shared[best], len(prompt) - 1)
