"""anchored_insert_edit: insert lines after / before lines named by copying them, or at the top / end of a file.

Block tag `insert`, parts <after> or <before>, and <new>; `at="top"` / `at="end"` instead of a copied part.
"""

from __future__ import annotations

from typing import Literal

from tools.proposals import AnchoredInsertEdit
from tools.spec import ToolSpec

USAGE = ('needs an <after> or a <before> part (a line copied from the file), or at="top" or at="end"; '
         "and a <new> part")


def anchored_insert_edit(path: str, version: str, *, after: str = "", before: str = "",
                         at: Literal["", "top", "end"] = "", new: str) -> AnchoredInsertEdit:
    """Insert new lines after or before existing lines copied from a file, or at its top or end.

    Args:
        path: the file, as named in its header (relative to the workspace root).
        version: the file's version, copied from its header.
        after: whole lines copied exactly from the file (usually one); the new lines go right after them.
        before: whole lines copied exactly from the file (usually one); the new lines go right before them.
        at: "top" or "end" to insert at the start or the end of the file instead (then no after or before).
        new: the lines to insert, as they should appear in the file.
    """
    at = at.strip().lower()
    if at not in ("", "top", "end"):
        raise ValueError(f'has at={at!r}; write at="top" or at="end"')
    places = [where for where, given in (("after", after), ("before", before), (at, at)) if given]
    if not places:
        raise ValueError(USAGE)
    if len(places) > 1:
        raise ValueError("has more than one of <after>, <before> and at=; give one")
    anchor = {"after": after, "before": before}.get(places[0], "")
    return AnchoredInsertEdit(path, version, places[0], anchor, new)


SPEC = ToolSpec(anchored_insert_edit, tag="insert", sections=("after", "before", "new"), usage=USAGE)
