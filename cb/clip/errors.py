"""The clipboard bridge's one error type: its message is a single line for the user."""

from __future__ import annotations


class ClipError(Exception):
    """Anything the bridge cannot do (no Redis, refused credentials, clip too large, no terminal)."""
