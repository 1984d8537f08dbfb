"""How a file is shown to the model: a header with its path and version, then numbered lines.

cb builds the prompt's file sections with `file_block`, so the numbers and the version the model copies
into its edits are exactly the ones `tools.apply` checks:

    <file path="app.py" version="3f9a1c2b" lines="120">
      1| import os
      2|
    ...
    </file>

A window (`start`, `end`) shows part of a long file: the header still carries the whole file's version
and line count, says which lines are shown (`shown="1-95"`), and a line stands where lines are left out
(`[… 25 lines of app.py not shown]`); numbers keep the whole file's width. Lines are decoded in the file's
own encoding (`tools.textfile`); the text is for the model, not the terminal: cb's sanitizer handles what
it prints.
"""

from __future__ import annotations

from tools.hashing import file_version
from tools.textfile import TextFile


def _numbered(lines: list[str], first: int, last: int) -> list[str]:
    """Lines `first`..`last` (1-based, inclusive) of `lines` as "  N| text", numbers as wide as the last line's."""
    width = len(str(max(len(lines), 1)))
    return [f"{n:>{width}}| {lines[n - 1]}" if lines[n - 1] else f"{n:>{width}}|" for n in range(first, last + 1)]


def numbered_lines(data: bytes, start: int = 1, end: int | None = None) -> str:
    """Lines `start`..`end` (1-based, inclusive; default all) as "  N| text", one per line."""
    lines = TextFile.parse(data).text_lines()
    return "\n".join(_numbered(lines, max(start, 1), len(lines) if end is None else min(end, len(lines))))


def file_block(path: str, data: bytes, start: int = 1, end: int | None = None) -> str:
    """The prompt section for one open file: header with path, version and line count, numbered lines, footer."""
    lines = TextFile.parse(data).text_lines()
    total = len(lines)
    first, last = max(start, 1), total if end is None else min(end, total)
    window = "" if first == 1 and last == total else f' shown="{first}-{last}"'
    header = f'<file path="{path}" version="{file_version(data)}" lines="{total}"{window}>'
    before = [f"[… {first - 1} earlier lines of {path} not shown]"] if first > 1 else []
    after = [f"[… {total - last} lines of {path} not shown]"] if last < total else []
    return "\n".join([header, *before, *_numbered(lines, first, last), *after, "</file>"])
