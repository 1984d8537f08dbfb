"""Plan a batch: check every proposal against the files as they are now, and compute the new bytes.

`plan_batch` reads each target once and checks, before anything is shown or written: the path (inside
the root, a regular text file, see `tools.workspace`), the version the model saw (`tools.hashing`), each
line range, overlaps between edits of one file, and that new text fits the file's encoding. Any failure
is an error in `Plan.errors` and the batch will not be applied at all. A valid batch yields one
`FileChange` per file: its exact old and new bytes, the diff, a summary and any warnings.

An edit that names its lines by copying them (format v2) gets its line range here, from the file as it is now,
after its version was checked to be the one the model saw (`tools.anchors`); a copy that is missing or
ambiguous is an error that says what to copy instead, and a tolerant match adds a note. From then on it is a
numbered edit like the others. A rename (`tools.renames`) is checked against the version the model saw and
made last, on the text the other edits leave, one line edit per line holding a use. Line numbers of all edits
to one file refer to the version the model saw; they are applied bottom-up so they do not shift each other.
The plan keeps the proposals as they were written (a confirmation returns them, and `tools.apply` plans them
again, against the disk).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools import anchors
from tools import renames as renames_of
from tools.format import EXAMPLE_NEW_PATH, EXAMPLE_PATH, EXAMPLE_VERSION
from tools.hashing import VERSION_LEN, file_version, same_version
from tools.preview import summarize, unified_diff, warnings_for
from tools.proposals import (
    CreateFile,
    EditProposal,
    InsertAfterEdit,
    LineEdit,
    LineReplaceEdit,
    Proposal,
    RenameEdit,
    RunProposal,
    SearchReplaceEdit,
    SingleLineEdit,
    content_lines,
    describe,
)
from tools.textfile import NotEditable, TextFile
from tools.workspace import Refused, Target, read_target, resolve

NEW_FILE_MODE = 0o666  # before the umask, like any editor
_LOOKS_LIKE_VERSION = re.compile(rf"[0-9a-fA-F]{{{VERSION_LEN}}}")


class _Refusals(Exception):
    """Several reasons one file's edits are refused (every copied part that cannot be found, at once)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class FileChange:
    """One file's change, exactly as it will be written."""

    path: str  # as the proposals named it
    target: Path  # the real path that is written (a symlink's target)
    old: bytes | None  # None: the batch creates the file
    new: bytes
    mode: int  # permission bits the written file gets (the old file's, or the default for a new one)
    proposals: tuple[EditProposal, ...]
    diff: str
    summary: str
    warnings: tuple[str, ...]
    owner: tuple[int, int] | None = None  # (uid, gid) to keep when cb runs as root

    @property
    def created(self) -> bool:
        return self.old is None


@dataclass(frozen=True)
class Plan:
    """A checked batch: the file changes, the run proposals, and errors (any error refuses the whole batch)."""

    root: Path
    changes: tuple[FileChange, ...] = ()
    runs: tuple[RunProposal, ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())  # e.g. an edit that changes nothing

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def proposals(self) -> tuple[EditProposal, ...]:
        return tuple(p for c in self.changes for p in c.proposals)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{c.path}: {w}" for c in self.changes for w in c.warnings)


def plan_batch(proposals: Sequence[Proposal], root: Path | str) -> Plan:
    """Check `proposals` against the files under `root` now; returns the plan, with errors if any."""
    root = Path(root)
    runs = tuple(p for p in proposals if isinstance(p, RunProposal))
    groups: dict[Path, tuple[Target, list[EditProposal]]] = {}
    errors: list[str] = []
    for p in proposals:
        if isinstance(p, RunProposal):
            continue
        try:
            target = resolve(root, p.path)
        except Refused as exc:
            errors.append(f"{describe(p)}: {exc}")
            continue
        groups.setdefault(target.real, (target, []))[1].append(p)
    changes: list[FileChange] = []
    notes: list[str] = []
    for target, edits in groups.values():
        try:
            change, found = _plan_file(root, target, edits)
        except _Refusals as exc:
            errors.extend(exc.messages)
            continue
        except (Refused, NotEditable) as exc:
            errors.append(str(exc) if str(exc).startswith(target.shown) else f"{target.shown}: {exc}")
            continue
        notes.extend(found)
        if change.old == change.new:
            notes.append(f"{target.shown}: the proposed edits change nothing; skipped")
            continue
        changes.append(change)
    return Plan(root, tuple(changes), runs, tuple(errors), tuple(notes))


def _plan_file(root: Path, target: Target, edits: list[EditProposal]) -> tuple[FileChange, list[str]]:
    creates = [e for e in edits if isinstance(e, CreateFile)]
    if not target.exists and target.shown.strip() in (EXAMPLE_PATH, EXAMPLE_NEW_PATH):
        raise Refused(f"{target.shown}: is the instructions' example path; use the path of a file you were shown"
                      if not creates else f"{target.shown}: is the instructions' example path; name the new file")
    if creates:
        if len(edits) > 1:
            raise Refused(f"{target.shown}: the batch both creates and edits it; send the whole file in one create")
        if target.exists:
            raise Refused(f"{target.shown}: already exists; edit it with line edits instead of creating it")
        create = creates[0]
        lines = content_lines(create.content)
        new = create.content.encode("utf-8") if lines else b""
        spans = [(0, 0, len(lines))]
        return FileChange(target.shown, target.real, None, new, NEW_FILE_MODE, (create,),
                          unified_diff(target.shown, None, lines), f"creates it with {len(lines)} lines",
                          warnings_for(None, spans, [create])), []
    if not target.exists:
        raise Refused(f"{target.shown}: does not exist (a new file needs a create block)")
    old, st = read_target(target)
    if not st.st_mode & 0o222:
        raise Refused(f"{target.shown}: is read-only (mode {st.st_mode & 0o7777:o}); make it writable to edit it")
    for e in edits:
        if not same_version(e.version, old):
            raise Refused(_version_error(target.shown, e.version.strip(), old))
    text = TextFile.parse(old)
    renames = [e for e in edits if isinstance(e, RenameEdit)]
    labelled, notes = _numbered(target.shown, [e for e in edits if not isinstance(e, RenameEdit)], text)
    for e, _ in labelled:
        _check_range(e, len(text))
    ordered = sorted(labelled, key=lambda pair: pair[0].span())
    for (prev, prev_label), (cur, cur_label) in itertools.pairwise(ordered):
        (a1, b1), (a2, b2) = prev.span(), cur.span()
        if a2 < b1 or (a1 == b1 == a2 == b2) or (a1 < a2 < b1):
            raise Refused(f"{target.shown}: {prev_label} and {cur_label} overlap; merge them into one edit")
    newline = text.newline()
    result = text
    spans = []
    written = [False] * len(text)  # per line of the result: whether an edit wrote it
    for e, _ in reversed(ordered):
        start, end = e.span()
        new_lines = e.new_lines()
        result = result.splice(start, end, new_lines, newline)
        written[start:end] = [True] * len(new_lines)
        spans.append((start, end, len(new_lines)))
    if renames:
        result, renamed = _renamed(target.shown, text, result, renames)
        spans.extend((row, row + 1, 1) for row in renamed if not written[row])  # the others are counted
    return FileChange(
        target.shown, target.real, old, result.to_bytes(), st.st_mode & 0o7777, tuple(edits),
        unified_diff(target.shown, text.text_lines(), result.text_lines()), summarize(spans),
        warnings_for(len(text), spans, [e for e, _ in labelled]), (st.st_uid, st.st_gid),
    ), notes


def _version_error(shown: str, claimed: str, data: bytes) -> str:
    if claimed == EXAMPLE_VERSION or not _LOOKS_LIKE_VERSION.fullmatch(claimed):
        return f'{shown}: version={claimed!r} is not its version; copy version="{file_version(data)}" from its header'
    return (f"{shown}: changed since the model saw it (it saw version {claimed!r}, "
            f"the file is now {file_version(data)}); nothing was applied")


def _numbered(shown: str, edits: list[EditProposal], text: TextFile) -> tuple[list[tuple[LineEdit, str]], list[str]]:
    """Each edit as a numbered edit of `text` with a label for messages; copied lines are found first."""
    labelled: list[tuple[LineEdit, str]] = []
    errors: list[str] = []
    notes: list[str] = []
    lines: list[str] | None = None
    for e in edits:
        if isinstance(e, SingleLineEdit | LineReplaceEdit | InsertAfterEdit):
            labelled.append((e, describe(e)))
            continue
        assert not isinstance(e, CreateFile)
        lines = text.text_lines() if lines is None else lines
        try:
            numbered, how = anchors.resolve(e, lines)
        except anchors.AnchorError as exc:
            errors.append(f"{shown}: {exc}")
            continue
        start, end = numbered.span()
        where = anchors.span_text(start + 1, end) if isinstance(e, SearchReplaceEdit) else \
            f"after line {start}" if start else "at the top"
        labelled.append((numbered, f"{describe(e)} ({where})"))
        if how:
            notes.append(f"{describe(e)}: found at {where} ({how})")
    if errors:
        raise _Refusals(errors)
    return labelled, notes


def _renamed(shown: str, seen: TextFile, result: TextFile, renames: list[RenameEdit]) -> tuple[TextFile, list[int]]:
    """`result` with each rename made, and the rows it changed. The names are checked against the version
    the model saw; the uses are found in the text the batch's other edits leave, so the new lines they wrote
    are renamed too."""
    errors = []
    lines = seen.text_lines()
    for e in renames:
        try:
            renames_of.check(lines, shown, e.old, e.new)
        except renames_of.RenameError as exc:
            errors.append(f"{describe(e)}: {exc}")
    if errors:
        raise _Refusals(errors)
    before = result.text_lines()
    after = before
    for e in renames:
        after = renames_of.renamed(after, shown, e.old, e.new)
    rows = [row for row, (was, now) in enumerate(zip(before, after, strict=True)) if was != now]
    for row in rows:
        result = result.splice(row, row + 1, [after[row]])
    return result, rows


def _check_range(e: LineEdit, count: int) -> None:
    start, end = e.span()
    if e.kind == "insert":
        if start > count:
            raise Refused(f"{e.path}: {describe(e)}, but it has only {count} lines")
    elif end > count or start >= end:
        raise Refused(f"{e.path}: {describe(e)}, but it has only {count} lines")
