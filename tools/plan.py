"""Plan a batch: check every proposal against the files as they are now, and compute the new bytes.

`plan_batch` reads each target once and checks, before anything is shown or written: the path (inside
the root, a regular text file, see `tools.workspace`), the version the model saw (`tools.hashing`), each
line range, overlaps between edits of one file, and that new text fits the file's encoding. Any failure
is an error in `Plan.errors` and the batch will not be applied at all. A valid batch yields one
`FileChange` per file: its exact old and new bytes, the diff, a summary and any warnings. Line numbers of
all edits to one file refer to the version the model saw; they are applied bottom-up so they do not
shift each other.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.hashing import file_version, same_version
from tools.preview import summarize, unified_diff, warnings_for
from tools.proposals import CreateFile, EditProposal, LineEdit, Proposal, RunProposal, content_lines, describe
from tools.textfile import NotEditable, TextFile
from tools.workspace import Refused, Target, read_target, resolve

NEW_FILE_MODE = 0o666  # before the umask, like any editor


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
            change = _plan_file(root, target, edits)
        except (Refused, NotEditable) as exc:
            errors.append(str(exc) if str(exc).startswith(target.shown) else f"{target.shown}: {exc}")
            continue
        if change.old == change.new:
            notes.append(f"{target.shown}: the proposed edits change nothing; skipped")
            continue
        changes.append(change)
    return Plan(root, tuple(changes), runs, tuple(errors), tuple(notes))


def _plan_file(root: Path, target: Target, edits: list[EditProposal]) -> FileChange:
    creates = [e for e in edits if isinstance(e, CreateFile)]
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
                          warnings_for(None, spans, [create]))
    line_edits: list[LineEdit] = [e for e in edits if not isinstance(e, CreateFile)]
    if not target.exists:
        raise Refused(f"{target.shown}: does not exist (a new file needs a create block)")
    old, st = read_target(target)
    if not st.st_mode & 0o222:
        raise Refused(f"{target.shown}: is read-only (mode {st.st_mode & 0o7777:o}); make it writable to edit it")
    for e in line_edits:
        if not same_version(e.version, old):
            raise Refused(f"{target.shown}: changed since the model saw it (it saw version {e.version.strip()!r}, "
                          f"the file is now {file_version(old)}); nothing was applied")
    text = TextFile.parse(old)
    for e in line_edits:
        _check_range(e, len(text))
    ordered = sorted(line_edits, key=lambda e: e.span())
    for prev, cur in itertools.pairwise(ordered):
        (a1, b1), (a2, b2) = prev.span(), cur.span()
        if a2 < b1 or (a1 == b1 == a2 == b2) or (a1 < a2 < b1):
            raise Refused(f"{target.shown}: {describe(prev)} and {describe(cur)} overlap; merge them into one edit")
    newline = text.newline()
    result = text
    spans = []
    for e in sorted(line_edits, key=lambda e: e.span(), reverse=True):
        start, end = e.span()
        new_lines = e.new_lines()
        result = result.splice(start, end, new_lines, newline)
        spans.append((start, end, len(new_lines)))
    return FileChange(
        target.shown, target.real, old, result.to_bytes(), st.st_mode & 0o7777, tuple(line_edits),
        unified_diff(target.shown, text.text_lines(), result.text_lines()), summarize(spans),
        warnings_for(len(text), spans, line_edits), (st.st_uid, st.st_gid),
    )


def _check_range(e: LineEdit, count: int) -> None:
    start, end = e.span()
    if e.kind == "insert":
        if start > count:
            raise Refused(f"{e.path}: {describe(e)}, but it has only {count} lines")
    elif end > count or start >= end:
        raise Refused(f"{e.path}: {describe(e)}, but it has only {count} lines")
