"""The proposals a model answer can hold: four edit operations and a shell command, as frozen dataclasses.

Every edit names the file `path` (relative to the workspace root, or absolute inside it) and, except
`CreateFile`, the `version` of the file the model saw (`tools.hashing.file_version`); line numbers are
1-based and refer to that version. Each edit reduces to one splice, "replace old lines [a, b) with these
new lines", which `span()` and `new_lines()` give; the splice itself happens in `tools.textfile`.

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
EditProposal = LineEdit | CreateFile
Proposal = EditProposal | RunProposal


def describe(p: Proposal) -> str:
    """A short human label such as "replace a.py lines 3-5" (for messages and prompts)."""
    if isinstance(p, SingleLineEdit):
        return f"edit {p.path} line {p.line}"
    if isinstance(p, LineReplaceEdit):
        return f"replace {p.path} lines {p.start}-{p.end}"
    if isinstance(p, InsertAfterEdit):
        return f"insert into {p.path} after line {p.line}"
    if isinstance(p, CreateFile):
        return f"create {p.path}"
    return f"run in tab {p.tab!r}: {p.command}"
