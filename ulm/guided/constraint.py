"""One request's grammar state: an llguidance `LLMatcher`, compiled for that request and used by it alone.

The engine asks it for the mask of the allowed next tokens (an int32 bitmask row, llguidance's layout: bit
i % 32 of word i / 32), tells it each sampled token (`advance`), and ends the request when it is `done`:
the grammar is complete and can take no more text. A stop token (EOS) is allowed by the mask exactly when
the text so far is a complete sentence of the grammar.
"""

from __future__ import annotations

from typing import Any


class GrammarViolation(RuntimeError):
    """A token the grammar refused reached the constraint (a mask was not honoured), or its parser failed."""


class Constraint:
    """Single use: the state moves forward with the request's tokens."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher  # llguidance.LLMatcher, initial state

    def fill(self, row_ptr: int, nbytes: int) -> None:
        """Write the mask of the allowed next tokens at row_ptr (nbytes = 4·⌈V/32⌉); drops the GIL."""
        self.matcher.unsafe_compute_mask_ptr(row_ptr, nbytes)

    def advance(self, token: int) -> None:
        """The sampled token: the parser takes it, or GrammarViolation."""
        if not self.matcher.consume_token(token):
            raise GrammarViolation(f"the grammar refused token {token}: {self.matcher.get_error()}")

    @property
    def done(self) -> bool:
        """The grammar is complete and allows nothing but a stop token."""
        return bool(self.matcher.is_stopped())

    @property
    def error(self) -> str:
        """Why the parser failed ("" while it has not)."""
        return str(self.matcher.get_error()) if self.matcher.is_error() else ""
