"""Log probabilities in OpenAI's two shapes, from the engine's `TokenLogprob`s.

- chat (`logprobs: true`, `top_logprobs: k`): `{"content": [{"token", "logprob", "bytes", "top_logprobs":
  [{"token", "logprob", "bytes"}, ...]}, ...]}`, one entry per output token (in a stream, each chunk carries
  its tokens' entries);
- text completions (`logprobs: k`): `{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}],
  "text_offset"}`.

A token's text is its bytes decoded as UTF-8 with replacement (a token holding part of a character shows
as U+FFFD; `bytes` has the exact bytes). `TokenBytes` maps an id to its bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ulm.engine.types import TokenLogprob

TokenBytes = Callable[[int], bytes]


def chat_entry(token: int, lp: TokenLogprob, piece: TokenBytes) -> dict[str, Any]:
    def one(t: int, logprob: float) -> dict[str, Any]:
        raw = piece(t)
        return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}

    return {**one(token, lp.logprob), "top_logprobs": [one(t, v) for t, v in lp.top]}


class TextLogprobs:
    """The text completion's logprobs object, built a token at a time."""

    def __init__(self, piece: TokenBytes) -> None:
        self._piece = piece
        self._offset = 0
        self.value: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                            "text_offset": []}

    def add(self, token: int, lp: TokenLogprob) -> None:
        text = self._text(token)
        self.value["tokens"].append(text)
        self.value["token_logprobs"].append(lp.logprob)
        self.value["top_logprobs"].append({self._text(t): v for t, v in lp.top})
        self.value["text_offset"].append(self._offset)
        self._offset += len(text)

    def _text(self, token: int) -> str:
        return self._piece(token).decode("utf-8", errors="replace")
