"""The proposals a model answer can hold: the edit operations and a shell command, as frozen dataclasses.

Every edit names the file `path` (relative to the workspace root, or absolute inside it) and, except
`CreateFile`, the `version` of the file the model saw (`tools.hashing.file_version`). Two ways to say
which lines an edit changes:

- by copying them (format v2): `SearchReplaceEdit` (the old lines and their replacement) and
  `AnchoredInsertEdit` (new lines after / before copied lines, or at the top / end). `tools.anchors`
  finds the copied lines in the version the model saw and turns the edit into a numbered one;
- by name: `RenameEdit` renames every use of a name in the file (`tools.renames` finds them);
- by line numbers (format v1, still read): `SingleLineEdit`, `LineReplaceEdit`, `InsertAfterEdit`;
  numbers are 1-based and refer to the version the model saw.

Each numbered edit reduces to one splice, "replace old lines [a, b) with these new lines", which `span()`
and `new_lines()` give; the splice itself happens in `tools.textfile`.

Content is text with lines separated by "\\n" (see `content_lines`). `RunProposal` is only parsed here:
cb shows it, asks, and hands it to an agentshell tab.
"""

from __future__ import annotations

from dataclasses import dataclass


def content_lines(content: str) -> list[str]:
    """Split edit content into lines: "" is no line, "a" and "a\\n" are one line, "\\n" is one empty line."""
    if content == "":
        return []
    parts = content.split("\n")
    return parts[:-1] if content.endswith("\n") else parts


def canonical_content(content: str) -> str:
    """The one spelling of a content: every line ends with "\\n" ("" = no line, "\\n" = one empty line)."""
    return "".join(line + "\n" for line in content_lines(content))


@dataclass(frozen=True)
class SingleLineEdit:
    """Replace line `line` with `content` (an empty content leaves the line empty, it does not delete it)."""

    path: str
    version: str
    line: int
    content: str

    kind = "edit"

    def span(self) -> tuple[int, int]:
        return self.line - 1, self.line

    def new_lines(self) -> list[str]:
        return content_lines(self.content) or [""]

    def first_line(self) -> int:
        return self.line


@dataclass(frozen=True)
class LineReplaceEdit:
    """Replace lines `start`..`end` (inclusive) with `content`; an empty content deletes them."""

    path: str
    version: str
    start: int
    end: int
    content: str

    kind = "replace"

    def span(self) -> tuple[int, int]:
        return self.start - 1, self.end

    def new_lines(self) -> list[str]:
        return content_lines(self.content)

    def first_line(self) -> int:
        return self.start


@dataclass(frozen=True)
class InsertAfterEdit:
    """Insert `content` after line `line`; line 0 inserts at the top of the file."""

    path: str
    version: str
    line: int
    content: str

    kind = "insert"

    def span(self) -> tuple[int, int]:
        return self.line, self.line

    def new_lines(self) -> list[str]:
        return content_lines(self.content)

    def first_line(self) -> int:
        return self.line


@dataclass(frozen=True)
class SearchReplaceEdit:
    """Replace the lines `old` (copied from the file; they must occur there once) with `content` (empty deletes)."""

    path: str
    version: str
    old: str
    content: str

    kind = "replace"


INSERT_PLACES = ("after", "before", "top", "end")


@dataclass(frozen=True)
class AnchoredInsertEdit:
    """Insert `content` after / before the copied lines `anchor`, or at the top / end (`anchor` empty)."""

    path: str
    version: str
    where: str  # one of INSERT_PLACES
    anchor: str
    content: str

    kind = "insert"


@dataclass(frozen=True)
class RenameEdit:
    """Rename the name `old` to `new` at every use in the file (tools.renames says what a use is)."""

    path: str
    version: str
    old: str
    new: str

    kind = "rename"


@dataclass(frozen=True)
class CreateFile:
    """Create a new file holding `content` (refused when the path already exists)."""

    path: str
    content: str

    kind = "create"
    version = ""

    def first_line(self) -> int:
        return 0


@dataclass(frozen=True)
class RunProposal:
    """A shell command for the agentshell tab named `tab`; tools only parses it, cb runs it after asking."""

    tab: str
    command: str

    kind = "run"


LineEdit = SingleLineEdit | LineReplaceEdit | InsertAfterEdit
AnchoredEdit = SearchReplaceEdit | AnchoredInsertEdit
EditProposal = LineEdit | AnchoredEdit | RenameEdit | CreateFile
Proposal = EditProposal | RunProposal


def describe(p: Proposal) -> str:
    """A short human label such as "replace a.py lines 3-5" (for messages and prompts)."""
    if isinstance(p, SingleLineEdit):
        return f"edit {p.path} line {p.line}"
    if isinstance(p, LineReplaceEdit):
        return f"replace {p.path} lines {p.start}-{p.end}"
    if isinstance(p, InsertAfterEdit):
        return f"insert into {p.path} after line {p.line}"
    if isinstance(p, SearchReplaceEdit):
        n = len(content_lines(p.old))
        return f"replace {n} copied line{'s' if n != 1 else ''} in {p.path} ({_first(p.old)})"
    if isinstance(p, AnchoredInsertEdit):
        if p.where in ("top", "end"):
            return f"insert at the {p.where} of {p.path}"
        return f"insert into {p.path} {p.where} {_first(p.anchor)}"
    if isinstance(p, RenameEdit):
        return f"rename {p.old} to {p.new} in {p.path}"
    if isinstance(p, CreateFile):
        return f"create {p.path}"
    return f"run in tab {p.tab!r}: {p.command}"


def _first(text: str, limit: int = 40) -> str:
    """The first copied line, quoted with repr (control characters escaped) and shortened."""
    lines = content_lines(text)
    first = lines[0] if lines else ""
    shown = first.strip()
    return repr(shown if len(shown) <= limit else shown[:limit] + "…") + (" …" if len(lines) > 1 else "")
