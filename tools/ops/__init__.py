"""The tools a model may call, in one explicit tuple (no module scanning).

Offered (taught in INSTRUCTIONS, listed by tool_schemas()): the two edits that name lines by copying them
(format v2), the rename of a name at every use, create_file and run. Still read, never taught: the three
numbered-line edits of format v1, so old answers and saved answers keep applying. `replace` and `insert` are
the block tags of both formats; `candidates` gives every tool a tag or name may mean, and the parser picks by
the block's shape.
"""

from __future__ import annotations

from collections.abc import Iterable

from tools.ops import (
    anchored_insert_edit,
    create_file,
    insert_after_edit,
    line_replace_edit,
    rename_symbol,
    run,
    search_replace_edit,
    single_line_edit,
)
from tools.spec import ToolSpec

TOOLS: tuple[ToolSpec, ...] = (
    search_replace_edit.SPEC,
    anchored_insert_edit.SPEC,
    rename_symbol.SPEC,
    create_file.SPEC,
    run.SPEC,
    single_line_edit.SPEC,
    line_replace_edit.SPEC,
    insert_after_edit.SPEC,
)

OFFERED: tuple[ToolSpec, ...] = tuple(t for t in TOOLS if t.offered)


def candidates(name: str) -> list[ToolSpec]:
    """The tools `name` may mean: the one with that function name, else every tool with that block tag; any case."""
    key = name.strip().lower()
    named = [t for t in TOOLS if t.name == key]
    return named or [t for t in TOOLS if t.tag == key]


def by_name(name: str, keys: Iterable[str] = ()) -> ToolSpec | None:
    """The tool `name` means given its argument names `keys`: the candidate that uses most of them (offered first)."""
    found = candidates(name)
    wanted = {k.lower() for k in keys}
    return max(found, key=lambda t: (sum(t.accepts(k) for k in wanted), t.offered), default=None)
