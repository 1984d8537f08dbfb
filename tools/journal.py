"""The undo journal: one entry per applied batch, holding the exact previous bytes and mode of every file.

Layout under the journal directory (cb passes `cb.paths.undo_dir()`):

    <id>/entry.json   what the batch did: per file its real path, created or modified, sha256 and mode
                      before and after, the blob holding the old bytes, the git snapshot ref if any
    <id>/<n>.orig     the old bytes of the n-th modified file
    .lock             flock'ed by every apply and undo, so a "pending" entry seen under the lock is a crash

An entry is written (status "pending") and fsynced before the first file is touched, then marked
"applied"; a failed batch that was rolled back is marked "rolled-back"; an undone one "undone". `undo`
restores every file of the entry or none: it refuses when any file changed after cb wrote it (its
sha256 is not the recorded "after"), naming the file. It restores exact bytes and mode, deletes files
the batch created (and folders it created, when empty). A file already at its old bytes (never written
because of a crash mid-batch, or put back by an undo that was cut short) is left alone. The newest
`keep` entries are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.atomic import atomic_write, fsync_dir, locked, remove_file
from tools.hashing import sha256

DEFAULT_KEEP = 100


@dataclass(frozen=True)
class FileRecord:
    """One file of a batch, as the journal remembers it."""

    path: str  # the real path written
    shown: str  # the name the proposal used
    created: bool
    after_sha256: str
    after_mode: int
    before_sha256: str | None = None
    before_mode: int | None = None
    blob: str | None = None  # file name of the old bytes inside the entry dir
    snapshot: Mapping[str, str] | None = None  # git snapshot: repo, ref, path


@dataclass(frozen=True)
class Entry:
    """One batch in the journal."""

    id: str
    created: float
    root: str
    status: str  # pending | applied | rolled-back | undone
    files: tuple[FileRecord, ...]
    created_dirs: tuple[str, ...] = ()

    def summary(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        names = ", ".join(("+" if f.created else "") + f.shown for f in self.files)
        return f"{self.id}  {when}  {self.status:<11}  {names}"


@dataclass(frozen=True)
class UndoResult:
    """What an undo did: restored and deleted files, or why it refused (then nothing changed)."""

    ok: bool
    entry: Entry | None = None
    restored: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def message(self) -> str:
        if not self.ok:
            return "; ".join(self.errors)
        parts = [f"restored {', '.join(self.restored)}"] if self.restored else []
        if self.deleted:
            parts.append(f"deleted {', '.join(self.deleted)}")
        return f"undid batch {self.entry.id if self.entry else '?'}: " + ("; ".join(parts) or "nothing to change")


@dataclass
class PendingFile:
    """What `Journal.record` needs to know about one file before it is written."""

    path: Path
    shown: str
    old: bytes | None
    old_mode: int | None
    new: bytes
    new_mode: int
    snapshot: Mapping[str, str] | None = field(default=None)


def new_entry_id() -> str:
    """A fresh batch id: sortable by time, unique (e.g. 20261123-160501-a1b2c3)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Journal:
    """The undo journal kept in `directory`."""

    def __init__(self, directory: Path | str, keep: int = DEFAULT_KEEP) -> None:
        self.directory = Path(directory)
        self.keep = keep

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the journal's lock (every apply and undo does, for its whole duration)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def record(self, root: Path, files: Sequence[PendingFile], created_dirs: Sequence[Path] = (),
               entry_id: str | None = None) -> Entry:
        """Write a pending entry with the old bytes of every file, durably, before any file is touched."""
        entry_id = entry_id or new_entry_id()
        entry_dir = self.directory / entry_id
        entry_dir.mkdir(mode=0o700, parents=True)
        records = []
        for n, f in enumerate(files):
            blob = None
            if f.old is not None:
                blob = f"{n}.orig"
                atomic_write(entry_dir / blob, f.old, 0o600)
            records.append(FileRecord(
                path=str(f.path), shown=f.shown, created=f.old is None, after_sha256=sha256(f.new),
                after_mode=f.new_mode, before_sha256=None if f.old is None else sha256(f.old),
                before_mode=f.old_mode, blob=blob, snapshot=dict(f.snapshot) if f.snapshot else None))
        entry = Entry(entry_id, time.time(), str(root), "pending", tuple(records), tuple(map(str, created_dirs)))
        self._save(entry)
        fsync_dir(self.directory)
        self._prune()
        return entry

    def mark(self, entry: Entry, status: str) -> Entry:
        """Record a new status for `entry` (applied, rolled-back, undone)."""
        updated = Entry(entry.id, entry.created, entry.root, status, entry.files, entry.created_dirs)
        self._save(updated)
        return updated

    def entries(self) -> list[Entry]:
        """Every entry, newest first (unreadable entries are skipped)."""
        found = []
        if not self.directory.is_dir():
            return found
        for d in self.directory.iterdir():
            if d.is_dir() and (d / "entry.json").is_file():
                with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                    found.append(_load(d / "entry.json"))
        return sorted(found, key=lambda e: (e.created, e.id), reverse=True)

    def undo_last(self) -> UndoResult:
        """Undo the newest batch that is applied (or was cut short by a crash)."""
        with self.locked():
            entry = next((e for e in self.entries() if e.status in ("applied", "pending")), None)
            if entry is None:
                return UndoResult(False, errors=("nothing to undo",))
            return self._undo(entry)

    def undo(self, entry_id: str) -> UndoResult:
        """Undo the batch `entry_id` (it must still be applied)."""
        with self.locked():
            entry = next((e for e in self.entries() if e.id == entry_id), None)
            if entry is None:
                return UndoResult(False, errors=(f"no batch {entry_id!r} in the undo journal",))
            if entry.status not in ("applied", "pending"):
                return UndoResult(False, entry, errors=(f"batch {entry_id} is {entry.status}; nothing to undo",))
            return self._undo(entry)

    # --- internals ---------------------------------------------------------------------------------------

    def _undo(self, entry: Entry) -> UndoResult:
        entry_dir = self.directory / entry.id
        dirs = {_existing_dir(Path(f.path).parent) for f in entry.files}
        with locked(dirs):
            restore: list[tuple[FileRecord, bytes]] = []
            delete: list[FileRecord] = []
            errors: list[str] = []
            for f in entry.files:
                current = _read(Path(f.path))
                now = None if current is None else sha256(current)
                if f.created:
                    if now == f.after_sha256:
                        delete.append(f)
                    elif now is not None:
                        errors.append(f"{f.shown}: changed after cb created it; not undoing (nothing was changed)")
                elif now == f.after_sha256:
                    assert f.blob is not None
                    restore.append((f, (entry_dir / f.blob).read_bytes()))
                elif now == f.before_sha256:
                    continue  # never written (a crash mid-batch) or already put back (an undo cut short)
                elif now is None:
                    errors.append(f"{f.shown}: was deleted after cb wrote it; not undoing (nothing was changed)")
                else:
                    errors.append(f"{f.shown}: changed after cb wrote it; not undoing (nothing was changed)")
            if errors:
                return UndoResult(False, entry, errors=tuple(errors))
            for f, old in restore:
                if sha256(old) != f.before_sha256:
                    return UndoResult(False, entry, errors=(f"{f.shown}: the journal's copy is damaged; not undoing",))
            try:
                for f, old in restore:
                    mode = f.before_mode if f.before_mode is not None else 0o644
                    st = os.stat(f.path)
                    atomic_write(Path(f.path), old, mode, (st.st_uid, st.st_gid))
                for f in delete:
                    remove_file(Path(f.path))
            except OSError as exc:
                return UndoResult(False, entry, errors=(
                    f"could not restore {exc.filename or 'a file'} ({exc.strerror or exc}); run `cb undo` again "
                    "once that is fixed (files already restored are skipped)",))
            for d in sorted(entry.created_dirs, key=len, reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(d)  # only when empty
        done = self.mark(entry, "undone")
        return UndoResult(True, done, tuple(f.shown for f, _ in restore), tuple(f.shown for f in delete))

    def _save(self, entry: Entry) -> None:
        data = json.dumps(asdict(entry), indent=1).encode()
        atomic_write(self.directory / entry.id / "entry.json", data, 0o600)

    def _prune(self) -> None:
        for old in self.entries()[self.keep:]:
            shutil.rmtree(self.directory / old.id, ignore_errors=True)


def _load(path: Path) -> Entry:
    raw = json.loads(path.read_text())
    files = tuple(FileRecord(**f) for f in raw["files"])
    return Entry(raw["id"], raw["created"], raw["root"], raw["status"], files, tuple(raw.get("created_dirs", ())))


def _read(path: Path) -> bytes | None:
    """The file's bytes, None when missing; a non-regular file (a FIFO put there since) reads as b"\\0"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b"\0"
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def _existing_dir(path: Path) -> Path:
    while not path.is_dir():
        path = path.parent
    return path
