"""The engine's vocabulary: what a request asks for (token ids, sampling, limits, stop strings) and what
flows back to its submitter (text deltas, then exactly one Finished or Failed), plus the engine's errors.

Plain dataclasses; sampling settings are `ulm.sampling.SamplingParams`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ulm.sampling import SamplingParams

FINISH_STOP = "stop"  # end-of-sequence token or a stop string
FINISH_LENGTH = "length"  # max_tokens, the context's end, or the server cut the request short (shutdown)
FINISH_CANCELLED = "cancelled"  # the client went away; never sent to anyone, only counted


class EngineError(Exception):
    """Base of the engine's refusals."""


class QueueFullError(EngineError):
    """Every slot is busy and the waiting queue is at its limit; try again later."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"the server is busy (all slots and the queue are full); retry in {retry_after_s} s")


class EngineStoppedError(EngineError):
    """The engine is shutting down or has died and accepts no more requests."""


@dataclass
class GenRequest:
    """One generation: prompt token ids in, at most max_tokens out, cut at the first stop string."""

    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    request_id: str = ""


@dataclass(frozen=True)
class Delta:
    """New text for the client: whole characters only, never part of a stop string. n_tokens = tokens it covers."""

    text: str
    n_tokens: int
    time: float  # time.monotonic() when the newest of its tokens was sampled


@dataclass(frozen=True)
class Timings:
    """llama.cpp-style timings of one request (milliseconds, tokens per second)."""

    cache_n: int
    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float

    def as_dict(self) -> dict[str, float | int]:
        def per_s(n: int, ms: float) -> float:
            return round(n / (ms / 1000.0), 2) if ms > 0 else 0.0

        def per_tok(n: int, ms: float) -> float:
            return round(ms / n, 3) if n else 0.0

        return {
            "cache_n": self.cache_n,
            "prompt_n": self.prompt_n,
            "prompt_ms": round(self.prompt_ms, 3),
            "prompt_per_token_ms": per_tok(self.prompt_n, self.prompt_ms),
            "prompt_per_second": per_s(self.prompt_n, self.prompt_ms),
            "predicted_n": self.predicted_n,
            "predicted_ms": round(self.predicted_ms, 3),
            "predicted_per_token_ms": per_tok(self.predicted_n, self.predicted_ms),
            "predicted_per_second": per_s(self.predicted_n, self.predicted_ms),
        }


@dataclass(frozen=True)
class Finished:
    """The request is over. prompt_tokens counts all of the prompt; cached_tokens of them were reused."""

    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    timings: Timings


@dataclass(frozen=True)
class Failed:
    """The engine failed while running this request; message is safe to show to the client."""

    message: str


__all__ = ["SamplingParams"]  # re-exported: a GenRequest carries one

Event = Delta | Finished | Failed
Sink = Callable[[Event], None]  # called from the engine's worker thread; must not block
