"""What the daemon persists about tabs, apart from live process handles, and the atomic save / restore.

`state.json` = {"version", "next_id", "tabs": [TabRecord...]}, written to a temp file, fsynced and renamed
over the old one, so a crash leaves either the old or the new state, never a torn one. On restore, tabs
that were running are marked `lost` (their leftover processes are killed by the caller) and never re-run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentshell import protocol as p

STATE_VERSION = 1


@dataclass
class TabRecord:
    id: int
    name: str
    argv: list[str]
    cwd: str
    token: str  # the env marker of this tab's processes (see procs.py)
    created: float
    status: str = p.RUNNING
    pid: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    ended: float | None = None
    cols: int = 120
    rows: int = 40
    end_offset: int = 0
    seen: dict[str, int] = field(default_factory=dict)  # reader -> offset of its last look

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TabRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class SavedState:
    next_id: int = 1
    tabs: list[TabRecord] = field(default_factory=list)


def save(path: Path, state: SavedState, durable: bool = True) -> None:
    """Atomically replace `path` with `state` (temp file in the same dir + rename). `durable` adds the fsyncs
    that make it survive a power cut; a crash of the daemon alone never loses a completed write."""
    payload = {"version": STATE_VERSION, "next_id": state.next_id, "tabs": [vars(t) for t in state.tabs]}
    body = json.dumps(payload, separators=(",", ":")).replace('{"id"', '\n{"id"').encode()  # a tab per line
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: Path) -> tuple[SavedState, str | None]:
    """(state, problem). A missing file is an empty state; an unreadable one is set aside as `.bad` and
    reported, so the daemon still starts."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return SavedState(), None
    try:
        data = json.loads(raw)
        tabs = [TabRecord.from_json(t) for t in data.get("tabs", [])]
        return SavedState(int(data.get("next_id", 1)), tabs), None
    except (ValueError, TypeError, AttributeError) as e:
        bad = path.with_name(path.name + ".bad")
        with contextlib.suppress(OSError):
            os.replace(path, bad)
        return SavedState(), f"state file {path} was unreadable ({e}); moved to {bad}"


def mark_lost(record: TabRecord) -> bool:
    """A tab that was running when the daemon died becomes `lost`. True if it changed."""
    if record.status != p.RUNNING:
        return False
    record.status = p.LOST
    record.ended = time.time()
    return True
