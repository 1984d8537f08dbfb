"""When a sequence ends, and which of its text may be shown: stop strings, stop token ids, max tokens.

Per-sequence, step-by-step objects (one per sequence; the caller feeds them as tokens arrive):

- `StopStrings(stops)`: `feed(text) -> (emit, stopped)`. Text is matched across token boundaries: a stop
  string may begin in one delta and end in a later one. Stop strings are never emitted, and text that
  could still be the start of a stop string is held back until it is decided; `flush()` returns what is
  held back when the sequence ends for another reason. When stopped, `emit` is the text before the stop.
- `StopCriteria(stop_token_ids, max_tokens)`: `check(token_id, n_generated) -> finish reason or None`.
  A stop token (EOS by default) ends with "stop" and is not part of the output; reaching max_tokens ends
  with "length".

Finish reasons follow OpenAI: "stop" (a stop string or stop token) and "length" (max tokens or context).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length"]


class StopStrings:
    """Holds back streamed text until no stop string can start in it; cuts the text at the first stop to complete."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self.stops = tuple(s for s in dict.fromkeys(stops) if s)
        self._held = ""
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def feed(self, text: str) -> tuple[str, bool]:
        """Add a text delta; return (text safe to emit, whether a stop string was found)."""
        if self.stopped:
            return "", True
        if not self.stops:
            return text, False
        buf = self._held + text
        # The stop that completes first wins (generation is causal: text after it was never going to be
        # produced), ties going to the one that starts first. This makes the result independent of how the
        # text is split into deltas.
        first: tuple[int, int, str] | None = None  # (end, start, stop)
        for stop in self.stops:
            pos = buf.find(stop)
            if pos >= 0 and (first is None or (pos + len(stop), pos) < first[:2]):
                first = (pos + len(stop), pos, stop)
        if first is not None:
            self.stopped, self.matched, self._held = True, first[2], ""
            return buf[: first[1]], True
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        """The held-back text, when the sequence ends without a stop string."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best


@dataclass(frozen=True)
class StopCriteria:
    """Stop token ids and the token budget of one sequence."""

    stop_token_ids: frozenset[int]
    max_tokens: int

    @classmethod
    def make(cls, stop_token_ids: Iterable[int], max_tokens: int) -> StopCriteria:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        return cls(frozenset(int(t) for t in stop_token_ids), max_tokens)

    def check(self, token_id: int, n_generated: int) -> FinishReason | None:
        """Finish reason after generating `token_id` as the `n_generated`-th token, or None to go on."""
        if token_id in self.stop_token_ids:
            return "stop"
        if n_generated >= self.max_tokens:
            return "length"
        return None
