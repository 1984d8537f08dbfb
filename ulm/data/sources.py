"""SOURCE arguments → the files to read, in a fixed order.

- A file is itself. A directory inside a git work tree lists what git tracks plus untracked files that
  .gitignore does not exclude (`git ls-files --cached --others --exclude-standard`); any other directory is
  walked in sorted order, skipping hidden entries (a leading dot) and `__pycache__`. A pattern with `*`, `?`
  or `[` that names no existing path is a glob (`**` recursive), its matches sorted.
- `include` / `exclude` are fnmatch patterns tried against the path relative to the source and against the
  file name; a file is kept when it matches some include (or there are none) and no exclude.
- Symlinks are not followed (a repository's links would read files twice, or outside the tree); they are
  reported as skipped by the caller.

A source that does not exist, cannot be listed, or yields no file is a DataError naming it.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ulm.data.errors import DataError

GLOB_CHARS = frozenset("*?[")
SKIPPED_DIRS = frozenset({"__pycache__"})


@dataclass(frozen=True)
class SourceFile:
    """One file to read: where it is, the source argument it came from, its path relative to that source."""

    path: Path
    source: int  # index of the SOURCE argument
    rel: str  # path shown in the manifest: relative to the source directory (or as given, for a file)


@dataclass(frozen=True)
class Source:
    """One SOURCE argument, resolved: its kind and its files."""

    arg: str
    kind: str  # "file", "dir", "git" or "glob"
    files: tuple[SourceFile, ...]


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _wanted(rel: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    return (not include or _matches(rel, include)) and not _matches(rel, exclude)


def _git_root(directory: Path) -> bool:
    """True when `directory` is inside a git work tree (and git is installed)."""
    if shutil.which("git") is None:
        return False
    proc = subprocess.run(["git", "-C", str(directory), "rev-parse", "--is-inside-work-tree"],
                          capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def _git_files(directory: Path) -> list[str]:
    """Paths (relative to `directory`, sorted) of the files git tracks or would track there."""
    proc = subprocess.run(["git", "-C", str(directory), "ls-files", "-z", "--cached", "--others",
                           "--exclude-standard", "--", "."], capture_output=True)
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DataError(f"{directory}: git ls-files failed ({reason[0] if reason else proc.returncode})")
    names = {n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n}
    return sorted(names)


def _walk(directory: Path) -> Iterator[str]:
    """Relative paths of the files under `directory`, sorted, hidden entries and __pycache__ skipped."""
    def on_error(exc: OSError) -> None:
        raise DataError(f"{exc.filename}: cannot list the directory ({exc.strerror})")

    for root, dirs, files in os.walk(directory, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        base = Path(root).relative_to(directory)
        for name in sorted(files):
            if not name.startswith("."):
                yield (base / name).as_posix()


def _directory(arg: str, index: int, directory: Path, include: Sequence[str],
               exclude: Sequence[str]) -> Source:
    git = _git_root(directory)
    rels = _git_files(directory) if git else list(_walk(directory))
    files = tuple(SourceFile(directory / rel, index, rel) for rel in rels if _wanted(rel, include, exclude))
    return Source(arg, "git" if git else "dir", files)


def resolve_source(arg: str, index: int, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Source:
    """One SOURCE argument → its files; DataError when it names nothing readable."""
    path = Path(arg).expanduser()
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise DataError(f"{arg}: cannot read the directory (permission denied)")
        source = _directory(arg, index, path, include, exclude)
    elif path.exists() or path.is_symlink():
        if not path.is_file():
            raise DataError(f"{arg}: not a regular file or directory")
        source = Source(arg, "file", (SourceFile(path, index, arg),))
    elif GLOB_CHARS & set(arg):
        matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
        if not matches:
            raise DataError(f"{arg}: no file matches this pattern")
        files: list[SourceFile] = []
        for match in matches:
            m = Path(match)
            if m.is_dir():
                files.extend(SourceFile(f.path, index, f"{match}/{f.rel}")
                             for f in _directory(arg, index, m, include, exclude).files)
            elif _wanted(match, include, exclude):
                files.append(SourceFile(m, index, match))
        source = Source(arg, "glob", tuple(files))
    else:
        raise DataError(f"{arg}: no such file or directory")
    if not source.files:
        raise DataError(f"{arg}: no files to read" + (" (after --include/--exclude)" if include or exclude else ""))
    return source


def resolve_sources(args: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Source]:
    """Every SOURCE argument resolved, in order; DataError when there are none."""
    if not args:
        raise DataError("no sources given: name files, directories, globs or git repositories")
    return [resolve_source(arg, i, include, exclude) for i, arg in enumerate(args)]
