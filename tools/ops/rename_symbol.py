"""rename_symbol: rename a name at every use in a file (block tag `rename`, attributes `from` and `to`).

    <rename path="app.py" version="3f9a1c2b" from="total" to="subtotal"/>

The uses are found by `tools.renames` when the plan runs, against the version the model saw.
"""

from __future__ import annotations

from tools.proposals import RenameEdit
from tools.spec import ToolSpec

USAGE = 'needs from="the name" and to="the new name", e.g. <rename path="…" version="…" from="a" to="b"/>'


def rename_symbol(path: str, version: str, name: str, new_name: str) -> RenameEdit:
    """Rename a function, class, variable or constant at every use in a file (definition, calls, imports).

    In a Python file only its code is renamed, not comments or strings.

    Args:
        path: the file, as named in its header (relative to the workspace root).
        version: the file's version, copied from its header.
        name: the name to rename, as it is written in the file.
        new_name: the new name.
    """
    if not name.strip() or not new_name.strip():
        raise ValueError(USAGE)
    return RenameEdit(path, version, name.strip(), new_name.strip())


SPEC = ToolSpec(rename_symbol, tag="rename", aliases={"from": "name", "to": "new_name"}, usage=USAGE)
