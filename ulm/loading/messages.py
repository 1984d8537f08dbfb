"""Text taken from a checkpoint (tensor names, architecture strings) made safe for a one-line error message."""

from __future__ import annotations


def show(text: object) -> str:
    """`text` with control and non-ASCII characters escaped (\\x1b, \\u202e), so a message stays one clean line."""
    return ascii(str(text))[1:-1]
