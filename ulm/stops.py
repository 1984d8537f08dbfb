"""Stop strings across token boundaries: which of a sequence's streamed text may be shown.

`StopStrings(stops)` is one sequence's step-by-step state: `feed(text) -> (emit, stopped)`. Text is matched
across token boundaries: a stop string may begin in one delta and end in a later one. Stop strings are
never emitted, and text that could still be the start of a stop string is held back until it is decided;
`flush()` returns what is held back when the sequence ends for another reason. When stopped, `emit` is
the text before the stop. (Stop token ids and the token budget are the engine's: `ulm.engine.worker`.)
"""

from __future__ import annotations

from collections.abc import Sequence


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
