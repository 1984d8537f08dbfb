"""Streaming detokenization: token ids in, text deltas out, never half a UTF-8 character.

`IncrementalDetokenizer(tokenizer)` is one sequence's state. `add(token_id) -> str` returns the new text
(often "", when a token ends mid-character); `flush() -> str` returns what is still held at the end. The
concatenation of everything returned equals `tokenizer.decode(all ids)` (with the same
`skip_special_tokens`), whatever the tokenizer (byte-level BPE, SentencePiece with its "▁" prefix space).

How: a token's text depends on its neighbours (a byte-level piece can end inside a character; a
SentencePiece word's leading space is dropped at the start of a decode), so each step decodes a short
window of recent ids twice, with and without the new tokens, and emits the difference. The window's
start advances only to a point where the text decoded cleanly (no trailing U+FFFD), so it never starts
inside a character. Cost per token: two decodes of a few ids in the Rust tokenizer.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Text deltas of one sequence's tokens, held back while the text ends in an incomplete character."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = False) -> None:
        # The Rust tokenizer under a transformers fast tokenizer (or a `tokenizers.Tokenizer` itself).
        self._backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # window start: ids before it are fully emitted and never decoded again
        self._read = 0  # ids before it are emitted; ids[_prefix:_read] give the window's emitted text

    def _decode(self, ids: list[int]) -> str:
        return self._backend.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def add(self, token_id: int) -> str:
        """Add one token; return the text that is now certain (possibly "")."""
        self.ids.append(int(token_id))
        return self._advance(final=False)

    def flush(self) -> str:
        """The text still held back (an incomplete character decodes to U+FFFD, as in decode())."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self._read == len(self.ids):
            return ""
        done = self._decode(self.ids[self._prefix:self._read]) if self._read > self._prefix else ""
        text = self._decode(self.ids[self._prefix:])
        if not final and (text.endswith(REPLACEMENT) or len(text) <= len(done)):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return text[len(done):]
