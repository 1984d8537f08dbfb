"""How a file is shown to the model: a header with its path and version, then numbered lines.

cb builds the prompt's file sections with `file_block`, so the numbers and the version the model copies
into its edits are exactly the ones `tools.apply` checks:

    <file path="app.py" version="3f9a1c2b" lines="120">
      1| import os
      2|
    ...
    </file>

A window (`start`, `end`) shows part of a long file; the header still carries the whole file's version
and line count. Lines are decoded in the file's own encoding (`tools.textfile`); the text is for the
model, not the terminal: cb's sanitizer handles what it prints.
"""

from __future__ import annotations

from tools.hashing import file_version
from tools.textfile import TextFile


def numbered_lines(data: bytes, start: int = 1, end: int | None = None) -> str:
    """Lines `start`..`end` (1-based, inclusive; default all) as "  N| text", one per line."""
    lines = TextFile.parse(data).text_lines()
    last = len(lines) if end is None else min(end, len(lines))
    width = len(str(max(last, 1)))
    out = []
    for n in range(max(start, 1), last + 1):
        text = lines[n - 1]
        out.append(f"{n:>{width}}| {text}" if text else f"{n:>{width}}|")
    return "\n".join(out)


def file_block(path: str, data: bytes, start: int = 1, end: int | None = None) -> str:
    """The prompt section for one open file: header with path, version and line count, numbered lines, footer."""
    total = len(TextFile.parse(data))
    whole = start <= 1 and (end is None or end >= total)
    window = "" if whole else f' shown="{max(start, 1)}-{min(end or total, total)}"'
    body = numbered_lines(data, start, end)
    header = f'<file path="{path}" version="{file_version(data)}" lines="{total}"{window}>'
    return f"{header}\n{body}\n</file>" if body else f"{header}\n</file>"
