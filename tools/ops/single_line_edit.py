"""single_line_edit: replace one line of a file (block tag `edit`)."""

from __future__ import annotations

from tools.proposals import SingleLineEdit
from tools.spec import ToolSpec


def single_line_edit(path: str, version: str, line: int, content: str) -> SingleLineEdit:
    """Replace one line of a file with new text.

    Args:
        path: the file, as named in its header (relative to the workspace root).
        version: the file's version, copied from its header.
        line: the number of the line to replace (1 is the first line).
        content: the new text of that line; several lines replace it with several.
    """
    if line < 1:
        raise ValueError(f"line={line} must be 1 or more")
    return SingleLineEdit(path, version, line, content)


SPEC = ToolSpec(single_line_edit, tag="edit", body="content", offered=False)
