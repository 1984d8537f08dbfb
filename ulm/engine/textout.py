"""One request's sampled tokens turned into client-safe text: `ulm.detok`'s incremental detokenizer (never
half a UTF-8 character) feeding `ulm.stops`' stop-string matcher (never a partial stop string).

`push(token)` returns the text that may be sent now and whether a stop string was hit; `flush()`, at the
end, returns what was held back, and whether a stop string turned up in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ulm.detok import IncrementalDetokenizer
from ulm.stops import StopStrings


class TextOutput:
    """Detokenizer + stop matcher for one request."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]) -> None:
        self._detok = IncrementalDetokenizer(tokenizer, skip_special_tokens=True)
        self._stops = StopStrings(stops)

    def push(self, token: int) -> tuple[str, bool]:
        piece = self._detok.add(token)
        return self._stops.feed(piece) if piece else ("", False)

    def flush(self) -> tuple[str, bool]:
        text, stopped = self._stops.feed(self._detok.flush())
        return (text, True) if stopped else (text + self._stops.flush(), False)
