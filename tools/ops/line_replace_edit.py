"""line_replace_edit: replace (or delete) a range of lines (block tag `replace`)."""

from __future__ import annotations

from tools.proposals import LineReplaceEdit
from tools.spec import ToolSpec


def line_replace_edit(path: str, version: str, start: int, end: int, content: str) -> LineReplaceEdit:
    """Replace the lines start to end (both included) with new text; empty text deletes them.

    Args:
        path: the file, as named in its header (relative to the workspace root).
        version: the file's version, copied from its header.
        start: the first line to replace (1 is the first line).
        end: the last line to replace (equal to start for one line).
        content: the new lines; empty to delete the range.
    """
    if start < 1:
        raise ValueError(f"start={start} must be 1 or more")
    if end < start:
        raise ValueError(f"end={end} is before start={start}")
    return LineReplaceEdit(path, version, start, end, content)


SPEC = ToolSpec(line_replace_edit, tag="replace", body="content", offered=False)
