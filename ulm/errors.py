"""The errors µLM raises for users: each carries a message that says what is wrong and what to do,
so CLIs print it in one line (no traceback) and the server maps it to an HTTP status."""

from __future__ import annotations


class UlmError(Exception):
    """Base of every user-facing µLM error."""


class ModelLoadError(UlmError):
    """A checkpoint that cannot be loaded: truncated, corrupted, unsupported, or inconsistent."""


class UnsupportedError(ModelLoadError):
    """An architecture, tensor type or feature µLM does not implement; the message names it."""


class ContextLengthError(UlmError):
    """A prompt (plus what must be generated) that does not fit the context."""

    def __init__(self, n_prompt_tokens: int, n_ctx: int, message: str | None = None) -> None:
        self.n_prompt_tokens = n_prompt_tokens
        self.n_ctx = n_ctx
        super().__init__(message or f"the prompt has {n_prompt_tokens} tokens, more than the context of {n_ctx}")


class EmptyPromptError(UlmError):
    """A prompt with no tokens to condition on."""
