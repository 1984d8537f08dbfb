"""search_replace_edit: replace lines named by copying them (block tag `replace`, parts <old> and <new>)."""

from __future__ import annotations

from tools.proposals import SearchReplaceEdit
from tools.spec import ToolSpec


def search_replace_edit(path: str, version: str, old: str, new: str) -> SearchReplaceEdit:
    """Replace lines of a file, named by copying them exactly; empty new text deletes them.

    Args:
        path: the file, as named in its header (relative to the workspace root).
        version: the file's version, copied from its header.
        old: the whole lines to replace, copied exactly from the file (with their indentation, without the
            line numbers); enough of them that they occur only once in the file.
        new: the lines that replace them, as they should appear in the file; empty to delete them.
    """
    if not old:
        raise ValueError("has an empty <old> part; copy into it the lines to replace (to add lines, use <insert>)")
    return SearchReplaceEdit(path, version, old, new)


SPEC = ToolSpec(search_replace_edit, tag="replace", sections=("old", "new"),
                usage="needs an <old> part (the lines to replace, copied from the file) and a <new> part")
