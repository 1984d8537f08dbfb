"""Chat sessions: per project (git root, else cwd), kept under cb.paths.sessions_dir().

    sessions/<id>/session.json       project root, name, created, open files (in the order opened)
    sessions/<id>/conversation.jsonl one JSON object per message: {"role", "content", "ts"}
    sessions/current.json            project root -> id of its current session

`cb` resumes the current session of the project it runs in, creating one on first use; `latest()` is the
project's session whose conversation changed last (`cb -c`), `search()` finds text in every conversation.
Files are written
atomically (temp file + rename); the conversation is appended one line at a time. The undo journal of
applied edits belongs to the tools package (cb.paths.undo_dir()).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cb import paths


class SessionError(ValueError):
    """A missing session or a bad file argument; the message is one line for the user."""


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (ValueError, OSError) as exc:
        raise SessionError(f"cannot read {path}: {exc}") from None


@dataclass
class Session:
    """One session's metadata; the conversation lives in its JSONL file."""

    id: str
    project: str
    name: str = ""
    created: float = field(default_factory=time.time)
    files: list[str] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return paths.sessions_dir() / self.id

    @property
    def conversation_file(self) -> Path:
        return self.dir / "conversation.jsonl"

    def save(self) -> None:
        _write_json(self.dir / "session.json", asdict(self))

    # --- open files ------------------------------------------------------------------------------------

    def resolve(self, path: str | Path) -> Path:
        """An absolute path for a user argument (relative to cwd)."""
        return Path(path).expanduser().resolve()

    def open_files(self, names: list[str]) -> list[str]:
        """Add existing regular files (in the given order); return those newly added. Raises on a bad one."""
        added = []
        for name in names:
            path = self.resolve(name)
            if not path.exists():
                raise SessionError(f"no such file: {name}")
            if not path.is_file():
                raise SessionError(f"not a regular file: {name}")
            if str(path) not in self.files:
                self.files.append(str(path))
                added.append(str(path))
        self.save()
        return added

    def close_files(self, names: list[str]) -> list[str]:
        """Remove files (by the name given, or by absolute path); return those removed. Raises on unknown ones."""
        removed = []
        for name in names:
            path = str(self.resolve(name))
            if path not in self.files:
                raise SessionError(f"not open: {name}")
            self.files.remove(path)
            removed.append(path)
        self.save()
        return removed

    def close_all(self) -> list[str]:
        removed, self.files = self.files, []
        self.save()
        return removed

    def display(self, path: str) -> str:
        """A path as the user should see it: relative to the project root when inside it."""
        try:
            return str(Path(path).relative_to(self.project))
        except ValueError:
            return path

    # --- conversation ----------------------------------------------------------------------------------

    def messages(self) -> list[dict[str, str]]:
        """The conversation so far: [{"role", "content"}, …]; a torn last line (crash mid-write) is skipped."""
        out: list[dict[str, str]] = []
        try:
            lines = self.conversation_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("role") in ("user", "assistant") and "content" in item:
                out.append({"role": item["role"], "content": str(item["content"])})
        return out

    def append(self, role: str, content: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"role": role, "content": content, "ts": round(time.time(), 3)}, ensure_ascii=True)
        with self.conversation_file.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def clear(self) -> None:
        """Forget the conversation (open files stay)."""
        self.conversation_file.unlink(missing_ok=True)

    def last_active(self) -> float | None:
        """When the conversation last changed (None: no conversation)."""
        try:
            return self.conversation_file.stat().st_mtime
        except FileNotFoundError:
            return None

    def instruction_files(self, names: list[str]) -> list[str]:
        """The files of `names` (AGENTS.md, …) at the project root that exist and are not opened already:
        absolute paths, shown to the model like open files."""
        found = [Path(self.project) / name for name in names]
        return [str(p) for p in found if p.is_file() and str(p.resolve()) not in self.files]


@dataclass
class Match:
    """A message that contains the searched text: its session, position and role, and a one-line snippet."""

    session: Session
    index: int
    role: str
    snippet: str


SNIPPET_CONTEXT = 40  # characters kept on each side of a match


def _snippet(text: str, start: int, end: int) -> str:
    """The match with SNIPPET_CONTEXT characters either side, on one line; … marks a cut end."""
    head = max(start - SNIPPET_CONTEXT, 0)
    tail = min(end + SNIPPET_CONTEXT, len(text))
    line = " ".join(text[head:tail].split())
    return ("…" if head else "") + line + ("…" if tail < len(text) else "")


def _new_id(project: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in project.name)[:24] or "root"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


def _current_file() -> Path:
    return paths.sessions_dir() / "current.json"


def load(session_id: str) -> Session:
    data = _read_json(paths.sessions_dir() / session_id / "session.json", None)
    if not isinstance(data, dict):
        raise SessionError(f"no session {session_id!r} (see `cb session list`)")
    known = {k: data[k] for k in ("id", "project", "name", "created", "files") if k in data}
    return Session(**known)


def new(project: Path, name: str = "") -> Session:
    """Create a session for `project` and make it the project's current one."""
    session = Session(id=_new_id(project), project=str(project), name=name)
    session.save()
    use(session)
    return session


def use(session: Session) -> None:
    current = _read_json(_current_file(), {})
    current[session.project] = session.id
    _write_json(_current_file(), current)


def current(project: Path) -> Session:
    """The project's current session, created on first use."""
    session_id = _read_json(_current_file(), {}).get(str(project))
    if session_id:
        try:
            return load(session_id)
        except SessionError:
            pass
    return new(project)


def latest(project: Path) -> Session | None:
    """The project's session whose conversation changed last (None when no session of it has one)."""
    talked = [(active, s) for s in list_all(project) if (active := s.last_active()) is not None]
    return max(talked, key=lambda pair: pair[0])[1] if talked else None


def search(text: str) -> Iterator[Match]:
    """Every message of every session that contains `text` (case-insensitive), newest session first."""
    pattern = re.compile(re.escape(text), re.IGNORECASE)
    for s in list_all():
        for i, m in enumerate(s.messages()):
            found = pattern.search(m["content"])
            if found:
                yield Match(s, i, m["role"], _snippet(m["content"], found.start(), found.end()))


def find(ref: str) -> Session:
    """A session by id or unique id prefix or name."""
    sessions = list_all()
    exact = [s for s in sessions if ref in (s.id, s.name)]
    matches = exact or [s for s in sessions if s.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SessionError(f"no session {ref!r} (see `cb session list`)")
    raise SessionError(f"{ref!r} matches {len(matches)} sessions; give more of the id")


def list_all(project: Path | None = None) -> list[Session]:
    """Sessions, newest first; only `project`'s when given."""
    root = paths.sessions_dir()
    if not root.is_dir():
        return []
    out = []
    for entry in root.iterdir():
        if (entry / "session.json").is_file():
            try:
                session = load(entry.name)
            except (SessionError, TypeError):
                continue
            if project is None or session.project == str(project):
                out.append(session)
    return sorted(out, key=lambda s: s.created, reverse=True)
