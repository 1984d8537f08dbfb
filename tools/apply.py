"""Apply a batch of edit proposals: plan, confirm, re-check, write atomically, journal. All or nothing.

    result = apply_batch(proposals, root, journal=Journal(cb.paths.undo_dir()), confirm=ask_the_user)

1. `plan_batch` checks every proposal (paths, versions, ranges, encodings) and computes each file's new
   bytes; any error refuses the whole batch before the user is asked.
2. `confirm(plan)` returns the proposals to apply (all, a subset, or edited ones; empty = no). The
   default refuses everything; a confirm that raises applies nothing.
3. Under the journal lock and a lock on every directory touched, each file is read again and must still
   hold exactly the bytes that were previewed (so a save from an editor while the user was deciding is
   refused, and kept); a file to create must still be absent.
4. Dirty files in a git repo are snapshotted (`tools.gitsnap`), the undo entry with the old bytes is
   written durably, then each file is replaced by temp file + fsync + rename + directory fsync
   (`tools.atomic`). If a write fails, files already written are put back and nothing stays changed.

Tools never print or prompt: cb's interactive confirmation lives in `cb.confirm`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.atomic import atomic_write, locked, remove_file, remove_stale_temps
from tools.gitsnap import snapshot
from tools.journal import Entry, Journal, PendingFile, new_entry_id
from tools.plan import FileChange, Plan, plan_batch
from tools.proposals import EditProposal, Proposal
from tools.workspace import Refused, Target, read_target

Confirm = Callable[[Plan], Sequence[EditProposal]]


def refuse_all(plan: Plan) -> Sequence[EditProposal]:
    """The default confirmation: apply nothing."""
    return ()


def accept_all(plan: Plan) -> Sequence[EditProposal]:
    """Apply everything, warnings included (`cb apply --yes --force`)."""
    return plan.proposals


def accept_unwarned(plan: Plan) -> Sequence[EditProposal]:
    """Apply everything unless some change carries a warning; then nothing (`cb apply --yes`)."""
    return () if plan.warnings else plan.proposals


@dataclass(frozen=True)
class ApplyResult:
    """The outcome: applied | declined | refused | failed | nothing; what was written; why not."""

    status: str
    plan: Plan
    written: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    entry: Entry | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("applied", "nothing")

    def message(self) -> str:
        """One line for the user."""
        if self.status == "applied":
            batch = f" (undo with `cb undo`, batch {self.entry.id})" if self.entry else ""
            return f"applied: {', '.join(self.written)}{batch}"
        if self.status == "declined":
            return "not applied: declined"
        if self.status == "nothing":
            return "nothing to apply"
        return "not applied: " + "; ".join(self.errors)


def apply_batch(proposals: Sequence[Proposal], root: Path | str, *, journal: Journal,
                confirm: Confirm = refuse_all) -> ApplyResult:
    """Plan, confirm and apply `proposals` under `root`, all or nothing; see the module docstring."""
    plan = plan_batch(proposals, root)
    if plan.errors:
        return ApplyResult("refused", plan, errors=plan.errors, notes=plan.notes)
    if not plan.changes:
        return ApplyResult("nothing", plan, notes=plan.notes)
    try:
        approved = tuple(confirm(plan))
    except Exception as exc:  # the contract: a failing confirmation applies nothing
        return ApplyResult("failed", plan, errors=(f"the confirmation failed ({exc}); nothing was applied",))
    if not approved:
        return ApplyResult("declined", plan)
    if approved != plan.proposals:
        shown = plan
        plan = plan_batch(approved, root)
        if plan.errors:
            return ApplyResult("refused", plan, errors=plan.errors)
        previewed = {c.target: c.old for c in shown.changes}
        moved = [c.path for c in plan.changes if c.target in previewed and previewed[c.target] != c.old]
        if moved:
            return ApplyResult("refused", plan, errors=tuple(_stale(p) for p in moved))
        if not plan.changes:
            return ApplyResult("nothing", plan, notes=plan.notes)
    return commit(plan, journal)


def commit(plan: Plan, journal: Journal) -> ApplyResult:
    """Write a confirmed plan (steps 3-4 of the module docstring)."""
    new_dirs = _missing_dirs(plan.changes)
    try:
        with journal.locked(), locked({_existing_dir(c.target.parent) for c in plan.changes}):
            return _commit_locked(plan, journal, new_dirs)
    except OSError as exc:  # only the locks and the journal folder get here; writes are handled inside
        return ApplyResult("failed", plan, errors=(
            f"could not lock the files or the undo journal ({exc.strerror or exc}); nothing was applied",))


def _commit_locked(plan: Plan, journal: Journal, new_dirs: list[Path]) -> ApplyResult:
    errors = [err for c in plan.changes if (err := _recheck(c))]
    if errors:
        return ApplyResult("refused", plan, errors=tuple(errors))
    entry_id = new_entry_id()
    snaps, notes = snapshot(entry_id, {c.target: c.old for c in plan.changes if c.old is not None})
    try:
        entry = journal.record(plan.root, [
            PendingFile(c.target, c.path, c.old, None if c.created else c.mode, c.new, _mode(c),
                        snaps.get(c.target))
            for c in plan.changes
        ], new_dirs, entry_id)
    except OSError as exc:
        return ApplyResult("failed", plan, errors=(
            f"could not write the undo journal in {journal.directory} ({exc.strerror or exc}); "
            "nothing was applied",))
    written: list[FileChange] = []
    try:
        for d in new_dirs:
            d.mkdir()
        for c in plan.changes:
            remove_stale_temps(c.target)
            atomic_write(c.target, c.new, _mode(c), c.owner)
            written.append(c)
    except BaseException as exc:  # OSError, or Ctrl-C mid-batch: put back what was written first
        failed = next((c for c in plan.changes if c not in written), plan.changes[-1])
        left = _roll_back(written, new_dirs)
        with contextlib.suppress(OSError):
            journal.mark(entry, "rolled-back" if not left else "pending")
        if not isinstance(exc, OSError):
            raise
        reason = f"{failed.path}: could not be written ({exc.strerror or exc}); "
        reason += "nothing was changed" if not left else f"could not put back: {', '.join(left)}"
        return ApplyResult("failed", plan, errors=(reason,), notes=tuple(notes))
    try:
        entry = journal.mark(entry, "applied")
    except OSError as exc:  # the files are written; the pending entry still undoes them
        notes.append(f"could not mark the undo entry as applied ({exc.strerror or exc}); `cb undo` still works")
    return ApplyResult("applied", plan, tuple(c.path for c in plan.changes), notes=plan.notes + tuple(notes),
                       entry=entry)


def _stale(path: str) -> str:
    return f"{path}: changed on disk while you were deciding; nothing was applied and that change is kept"


def _recheck(c: FileChange) -> str | None:
    if c.created:
        return f"{c.path}: appeared on disk while you were deciding; nothing was applied" if os.path.lexists(
            c.target) else None
    try:
        current, _ = read_target(Target(c.path, c.target, True))
    except Refused:
        return _stale(c.path)
    return None if current == c.old else _stale(c.path)


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _mode(c: FileChange) -> int:
    return c.mode & ~_umask() if c.created else c.mode


def _existing_dir(path: Path) -> Path:
    while not path.is_dir():
        path = path.parent
    return path


def _missing_dirs(changes: Sequence[FileChange]) -> list[Path]:
    missing: list[Path] = []
    for c in changes:
        d = c.target.parent
        chain = []
        while not d.exists():
            chain.append(d)
            d = d.parent
        missing.extend(p for p in reversed(chain) if p not in missing)
    return missing


def _roll_back(written: Sequence[FileChange], new_dirs: Sequence[Path]) -> list[str]:
    """Put back what a failed batch wrote; returns the paths that could not be restored."""
    left = []
    for c in reversed(written):
        try:
            if c.old is None:
                remove_file(c.target)
            else:
                atomic_write(c.target, c.old, c.mode, c.owner)
        except OSError:
            left.append(c.path)
    for d in reversed(new_dirs):
        with contextlib.suppress(OSError):
            d.rmdir()
    return left
