"""The generation vocabulary, shared by the engine, `ulm.Model` and the server: what a request asks for
(token ids, sampling, limits, stops) and what flows back to its submitter (an `Event` per sampled token,
the last one carrying the finish, or one `Failed`), plus the engine's errors.

- `Request.check(n_ctx, vocab_size)` is the one input check: ValueError naming the field for bad
  sampling settings, max_tokens or token ids, EmptyPromptError, ContextLengthError.
- Finish reasons follow OpenAI: "stop" (a stop token or stop string) and "length" (max_tokens, the
  context's end, or the server cutting the request short at shutdown); "cancelled" ends a request its
  submitter withdrew and is never shown to anyone.
- `Completion` is a whole answer: what `ulm.Model.generate` returns (`collect` builds it from events).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from ulm.errors import ContextLengthError, EmptyPromptError
from ulm.sampling import SamplingParams

FinishReason = Literal["stop", "length", "cancelled"]
FINISH_STOP: FinishReason = "stop"
FINISH_LENGTH: FinishReason = "length"
FINISH_CANCELLED: FinishReason = "cancelled"


class EngineError(Exception):
    """Base of the engine's refusals."""


class QueueFullError(EngineError):
    """Every slot is busy and the waiting queue is at its limit; try again later."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"the server is busy (all slots and the queue are full); retry in {retry_after_s} s")


class EngineStoppedError(EngineError):
    """The engine is shutting down or has died and accepts no more requests."""


@dataclass(frozen=True)
class Request:
    """One generation: prompt token ids in, at most max_tokens out, ended by a stop token or stop string."""

    prompt: list[int]
    max_tokens: int = 256
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()  # stop strings, never part of the text
    stop_token_ids: frozenset[int] | None = None  # None: the model's (EOS and end of turn); not part of the text
    request_id: str = ""

    def check(self, n_ctx: int, vocab_size: int) -> None:
        """Raise what makes this request impossible in a context of n_ctx positions: ValueError naming the
        field, EmptyPromptError, ContextLengthError."""
        self.sampling.validate()
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not self.prompt:
            raise EmptyPromptError("the prompt is empty: nothing to condition on")
        bad = next((t for t in self.prompt if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise ValueError(f"prompt token id {bad} is outside the vocabulary (0..{vocab_size - 1})")
        n = len(self.prompt)
        if n >= n_ctx:
            raise ContextLengthError(n, n_ctx, None if n > n_ctx else f"the prompt has {n} tokens, which leaves "
                                     f"no room to generate in the context of {n_ctx}")


@dataclass(frozen=True)
class Usage:
    """Token counts of one request (completion_tokens includes a stop token that ended it)."""

    prompt_tokens: int
    cached_tokens: int  # prompt tokens whose K/V were reused from the cache (not prefilled)
    completion_tokens: int

    @property
    def prefilled_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


@dataclass(frozen=True)
class Timings:
    """Where one request's time went, on the engine's clock (its steps' time: not the time it waited for a
    slot, nor an in-process caller's time between events)."""

    prefill_ms: float  # from taking a slot to the first token sampled: the prefill and the first sampling
    decode_ms: float  # from the first token to the last (forwards, sampling, detokenizing)
    decode_steps: int  # tokens sampled after the first

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_steps / (self.decode_ms / 1000) if self.decode_ms > 0 else 0.0


NO_TIMINGS = Timings(0.0, 0.0, 0)


@dataclass(frozen=True)
class Event:
    """One sampled token of a request and the text that is now certain (often "", when held back: half a
    character, or what may begin a stop string); the last event has the finish, usage and timings."""

    text: str
    token_id: int | None  # None when the token is not part of the output (a stop token), or on a finish alone
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timings: Timings | None = None


@dataclass(frozen=True)
class Failed:
    """The engine failed while running this request; message is safe to show to a client, error is what
    was raised (for in-process callers, who get it re-raised)."""

    message: str
    error: BaseException | None = None


Sink = Callable[[Event | Failed], None]  # called from the thread that runs the engine; must not block


@dataclass(frozen=True)
class Completion:
    """A finished generation: its text, generated token ids (a stop token excluded), finish, usage, timings."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    usage: Usage
    timings: Timings


def collect(events: Iterable[Event]) -> Completion:
    """The Completion of one request's events (which end with its finish)."""
    texts: list[str] = []
    tokens: list[int] = []
    for ev in events:
        texts.append(ev.text)
        if ev.token_id is not None:
            tokens.append(ev.token_id)
        if ev.finish_reason is not None:
            assert ev.usage is not None and ev.timings is not None
            return Completion("".join(texts), tokens, ev.finish_reason, ev.usage, ev.timings)
    raise ValueError("the events ended before the request finished")

