"""The one error the data pipeline raises for bad input: a message that names the source, file or line."""

from __future__ import annotations

from ulm.errors import UlmError


class DataError(UlmError):
    """A source, tokenizer or dataset that cannot be used; the message says which and why."""
