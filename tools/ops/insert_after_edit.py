"""insert_after_edit: insert new lines after a given line (block tag `insert`, attribute `after`)."""

from __future__ import annotations

from tools.proposals import InsertAfterEdit
from tools.spec import ToolSpec


def insert_after_edit(path: str, version: str, line: int, content: str) -> InsertAfterEdit:
    """Insert new lines after a line of a file; line 0 inserts at the top.

    Args:
        path: the file, as named in its header (relative to the workspace root).
        version: the file's version, copied from its header.
        line: the line after which the text goes (0 puts it before the first line).
        content: the lines to insert.
    """
    if line < 0:
        raise ValueError(f"after={line} must be 0 or more")
    return InsertAfterEdit(path, version, line, content)


SPEC = ToolSpec(insert_after_edit, tag="insert", body="content", aliases={"after": "line"}, offered=False)
