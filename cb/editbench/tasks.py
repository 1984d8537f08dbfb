"""The edit task, its check, the source it was made from, and the split rule.

    Task(id, tier, unit, files, open, request, check, solution)

- `files`: the workspace before the edit (relative path → exact bytes); `open`: the files shown to the
  model, in order; `request`: the user's message.
- `check` (all given parts must hold; see cb.editbench.score): `expect`, alternatives of the exact bytes of
  the files the task changes (any one matching passes); `script`, Python run in the edited copy that must
  exit 0; `keep`, files whose original lines must all still be there in order. Always: every file the
  solution does not change stays byte-identical, and no file appears or disappears.
- `solution`: a reference result (the changed files' bytes) that passes the check; training data and the
  corpus's own tests use it.

The split: a task is held out when the first byte of BLAKE2b(its source unit's name) is below 128, so all
tasks made from one module or project fall on the same side, a unit never moves when others are added, and
no prompt or format choice may be tuned on the held-out side. `overlaps_heldout(text)` tells a training-data
maker whether a source file holds a held-out unit's code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("heldout", "dev")

# The tiers in report order. Layout tiers hold variants of tasks of the other tiers.
EDIT_TIERS = ("literal", "rename", "import", "function", "delete", "rewrite", "bugfix", "two-file")
LAYOUT_TIERS = ("crlf", "tabs", "no-eol")
TIERS = EDIT_TIERS + LAYOUT_TIERS
SINGLE_FILE_TIERS = tuple(t for t in TIERS if t != "two-file")


@dataclass(frozen=True)
class Check:
    """What an edited workspace must satisfy (see the module docstring)."""

    expect: tuple[Mapping[str, bytes], ...] = ()
    script: str = ""
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    id: str
    tier: str
    unit: str
    files: Mapping[str, bytes]
    open: tuple[str, ...]
    request: str
    check: Check
    solution: Mapping[str, bytes]
    base_tier: str = ""  # for a layout variant: the tier of the task it was made from
    origin: str = "generated"  # or "hand-written"

    @property
    def split(self) -> str:
        return split_of(self.unit)


@dataclass(frozen=True)
class SourceFile:
    """One file of source code: its path in the workspace and its bytes."""

    path: str
    data: bytes


@dataclass(frozen=True)
class SourceUnit:
    """The unit the split is decided by: a module, or a small project of a few files."""

    name: str
    files: tuple[SourceFile, ...]
    meta: Mapping[str, str] = field(default_factory=dict)

    def text(self, path: str) -> str:
        return next(f.data for f in self.files if f.path == path).decode("utf-8")


def write_files(root: Path, files: Mapping[str, bytes]) -> None:
    """Write a task's files under `root` (folders made as needed), byte for byte."""
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def split_of(unit: str) -> str:
    """`heldout` or `dev`, by a stable hash of the unit's name (see the module docstring)."""
    return "heldout" if hashlib.blake2b(unit.encode("utf-8")).digest()[0] < 128 else "dev"


def _signature_lines(text: str) -> set[str]:
    """The distinctive lines of a text: stripped, at least 24 characters (too long to be common idiom)."""
    return {s for line in text.splitlines() if len(s := line.strip()) >= 24}


def overlaps_heldout(text: str, units: Iterable[SourceUnit], threshold: float = 0.3) -> bool:
    """Whether `text` holds `threshold` or more of the distinctive lines of any held-out unit among `units`
    (a training-data maker runs every source file it reads through this)."""
    lines = _signature_lines(text)
    for unit in units:
        if split_of(unit.name) != "heldout":
            continue
        for f in unit.files:
            own = _signature_lines(f.data.decode("utf-8", errors="replace"))
            if own and len(own & lines) >= threshold * len(own):
                return True
    return False
