"""The tools a model may call, in one explicit tuple (no module scanning): four edits and `run`."""

from __future__ import annotations

from tools.ops import create_file, insert_after_edit, line_replace_edit, run, single_line_edit
from tools.spec import ToolSpec

TOOLS: tuple[ToolSpec, ...] = (
    single_line_edit.SPEC,
    line_replace_edit.SPEC,
    insert_after_edit.SPEC,
    create_file.SPEC,
    run.SPEC,
)


def by_name(name: str) -> ToolSpec | None:
    """The tool called `name`: its function name (single_line_edit) or its block tag (edit); any case."""
    key = name.strip().lower()
    return next((t for t in TOOLS if key in (t.name, t.tag)), None)
