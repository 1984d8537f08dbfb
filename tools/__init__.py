"""Guarded line edits: parse proposals from model text, preview them, confirm, apply atomically, undo.

The path of a model answer through this package (cb drives it; tools never prints or prompts):

    result = parse_proposals(answer_text)             # tools.parse: blocks (tools.format) or tool-call JSON
    plan = plan_batch(result.proposals, root)         # tools.plan: checked against disk, diffs, warnings
    outcome = apply_batch(result.proposals, root,     # tools.apply: confirm, re-check, atomic write, journal
                          journal=Journal(cb.paths.undo_dir()), confirm=ask)
    Journal(cb.paths.undo_dir()).undo_last()          # tools.journal: exact bytes and mode back

How cb shows a file to the model: `file_block(path, data)` (tools.numbered), whose header carries
`file_version(data)` (tools.hashing), the version every edit must repeat. What the model is told:
`INSTRUCTIONS` (tools.format: format v2, where an edit names its lines by copying them and the plan finds
them, tools.anchors; the numbered format v1 is still read), or `TOOL_CALL_INSTRUCTIONS` beside
`tool_schemas()`. What a grammar builder needs to constrain generation to blocks about the open files:
`format_structure([OpenFile(path, version, lines), ...])` (tools.structure). The tools in one explicit
tuple, with their OpenAI schemas derived from their signatures: `TOOLS` (all that are read),
`tool_schemas()` (the ones offered: the v2 edits, create, run).

Modules, one job each: proposals (the dataclasses), ops/ (one module per tool + TOOLS), spec (schema from
signature), format (the block format, INSTRUCTIONS, render), parse, structure (the format for grammars),
anchors (copied lines → line ranges), hashing, numbered, textfile (bytes ↔ lines, the splice), workspace
(paths and file checks), preview (diff, summary, warnings, visible control characters), plan, atomic
(temp + fsync + rename, locks), gitsnap (dirty-file snapshots), journal (undo), apply.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it. Imported on first use, so `from tools.hashing import ...`
# (cb's start-up path) does not pay for the whole package.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("ApplyResult", "Confirm", "accept_all", "accept_unwarned", "apply_batch", "refuse_all"),
                    "tools.apply"),
    "AnchorError": "tools.anchors",
    **dict.fromkeys(("INSTRUCTIONS", "TOOL_CALL_INSTRUCTIONS", "render"), "tools.format"),
    "file_version": "tools.hashing",
    **dict.fromkeys(("Entry", "Journal", "UndoResult"), "tools.journal"),
    **dict.fromkeys(("file_block", "numbered_lines"), "tools.numbered"),
    **dict.fromkeys(("OFFERED", "TOOLS"), "tools.ops"),
    **dict.fromkeys(("ParseError", "ParseResult", "parse_proposals", "parse_tool_calls"), "tools.parse"),
    **dict.fromkeys(("FileChange", "Plan", "plan_batch"), "tools.plan"),
    "visible": "tools.preview",
    **dict.fromkeys(("AnchoredInsertEdit", "CreateFile", "EditProposal", "InsertAfterEdit", "LineReplaceEdit",
                     "Proposal", "RenameEdit", "RunProposal", "SearchReplaceEdit", "SingleLineEdit", "describe"),
                    "tools.proposals"),
    **dict.fromkeys(("OpenFile", "Structure", "format_structure"), "tools.structure"),
    **dict.fromkeys(("MAX_FILE_BYTES", "NotEditable"), "tools.textfile"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def tool_schemas() -> list[dict[str, Any]]:
    """The OpenAI `tools` list for a chat-completions request: one entry per offered tool (tools.ops.OFFERED)."""
    from tools.ops import OFFERED

    return [t.schema() for t in OFFERED]


__all__ = [*sorted(_EXPORTS), "tool_schemas"]
