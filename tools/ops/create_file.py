"""create_file: create a new file (block tag `create`); refused when the path exists."""

from __future__ import annotations

from tools.proposals import CreateFile
from tools.spec import ToolSpec


def create_file(path: str, content: str) -> CreateFile:
    """Create a new file with the given text (missing folders are created too).

    Args:
        path: the new file, relative to the workspace root; it must not exist yet.
        content: the whole text of the file.
    """
    if not path.strip():
        raise ValueError("path is empty")
    return CreateFile(path, content)


SPEC = ToolSpec(create_file, tag="create", body="content")
