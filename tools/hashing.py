"""The file "version": a short content hash shown next to every open file and repeated in every edit.

cb prints `version="…"` in the prompt for each file it shows the model, and the model copies it into its
edits; `tools.apply` recomputes it from the bytes on disk and refuses an edit whose version differs
(the file changed since the model saw it). cb MUST compute versions with `file_version` only.

Eight hex digits of SHA-256 over the exact bytes (BOM and line endings included): short enough for a
135M model to copy reliably, and a guard against accidental change, not an adversary. The apply step
additionally compares the exact bytes it previewed with the bytes it is about to replace.
"""

from __future__ import annotations

import hashlib

VERSION_LEN = 8


def file_version(data: bytes) -> str:
    """The version of a file's content: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:VERSION_LEN]


def same_version(claimed: str, data: bytes) -> bool:
    """Whether `claimed` (as the model wrote it; case and surrounding space ignored) names `data`'s version."""
    return claimed.strip().lower() == file_version(data)


def sha256(data: bytes) -> str:
    """The full SHA-256 hex digest (the undo journal's exact-content check)."""
    return hashlib.sha256(data).hexdigest()
