"""Guarded line edits: parse proposals from model text, preview them, confirm, apply atomically, undo.

The path of a model answer through this package (cb drives it; tools never prints or prompts):

    result = parse_proposals(answer_text)             # tools.parse: blocks (tools.format) or tool-call JSON
    plan = plan_batch(result.proposals, root)         # tools.plan: checked against disk, diffs, warnings
    outcome = apply_batch(result.proposals, root,     # tools.apply: confirm, re-check, atomic write, journal
                          journal=Journal(cb.paths.undo_dir()), confirm=ask)
    Journal(cb.paths.undo_dir()).undo_last()          # tools.journal: exact bytes and mode back

How cb shows a file to the model: `file_block(path, data)` (tools.numbered), whose header carries
`file_version(data)` (tools.hashing), the version every edit must repeat. What the model is told:
`INSTRUCTIONS`; what a server may constrain generation to: `GRAMMAR` (tools.format). The tools in one
explicit tuple, with their OpenAI schemas derived from their signatures: `TOOLS`, `tool_schemas()`.

Modules, one job each: proposals (the dataclasses), ops/ (one module per tool + TOOLS), spec (schema from
signature), format, parse, hashing, numbered, textfile (bytes ↔ lines, the splice), workspace (paths and
file checks), preview (diff, summary, warnings, visible control characters), plan, atomic (temp + fsync
+ rename, locks), gitsnap (dirty-file snapshots), journal (undo), apply.
"""

from __future__ import annotations

from typing import Any

from tools.apply import ApplyResult, Confirm, accept_all, accept_unwarned, apply_batch, refuse_all
from tools.format import GRAMMAR, INSTRUCTIONS, render
from tools.hashing import file_version
from tools.journal import Entry, Journal, UndoResult
from tools.numbered import file_block, numbered_lines
from tools.ops import TOOLS
from tools.parse import ParseError, ParseResult, parse_proposals, parse_tool_calls
from tools.plan import FileChange, Plan, plan_batch
from tools.preview import visible
from tools.proposals import (
    CreateFile,
    EditProposal,
    InsertAfterEdit,
    LineReplaceEdit,
    Proposal,
    RunProposal,
    SingleLineEdit,
    describe,
)
from tools.textfile import MAX_FILE_BYTES, NotEditable


def tool_schemas() -> list[dict[str, Any]]:
    """The OpenAI `tools` list for a chat-completions request: one entry per tool in TOOLS."""
    return [t.schema() for t in TOOLS]


__all__ = [
    "GRAMMAR", "INSTRUCTIONS", "MAX_FILE_BYTES", "TOOLS",
    "ApplyResult", "Confirm", "CreateFile", "EditProposal", "Entry", "FileChange", "InsertAfterEdit", "Journal",
    "LineReplaceEdit", "NotEditable", "ParseError", "ParseResult", "Plan", "Proposal", "RunProposal",
    "SingleLineEdit", "UndoResult",
    "accept_all", "accept_unwarned", "apply_batch", "describe", "file_block", "file_version", "numbered_lines",
    "parse_proposals", "parse_tool_calls", "plan_batch", "refuse_all", "render", "tool_schemas", "visible",
]
