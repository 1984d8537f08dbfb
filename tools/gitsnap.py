"""Keep a dirty file's uncommitted version recoverable in git before cb overwrites it.

For each target inside a git work tree that has uncommitted changes (or is untracked), cb stores the
file's exact bytes as a blob and makes one commit per batch and repository holding them on top of HEAD,
referenced by `refs/cb/snapshots/<batch id>`. HEAD, the index and the work tree are not touched (the
commit is built in a temporary index), and other dirty files are left alone. Recover with
`git show refs/cb/snapshots/<id>:<path>` or `git checkout refs/cb/snapshots/<id> -- <path>`; see what
was saved with `git diff HEAD refs/cb/snapshots/<id>`. The undo journal records the ref per file.

Best effort: without git, outside a repository, or if git fails, nothing is snapshotted (the undo
journal still holds the previous bytes) and the reason is returned as a note.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

SNAPSHOT_REF = "refs/cb/snapshots/"
_IDENTITY = {"GIT_AUTHOR_NAME": "cb", "GIT_AUTHOR_EMAIL": "cb@localhost",
             "GIT_COMMITTER_NAME": "cb", "GIT_COMMITTER_EMAIL": "cb@localhost"}


class GitError(RuntimeError):
    """A git command failed."""


def _git(cwd: Path, *args: str, data: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, timeout=30,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", **(env or {})})
    if proc.returncode != 0:
        raise GitError(f"git {args[0]}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="surrogateescape").strip()


def repo_of(path: Path) -> Path | None:
    """The top of the git work tree holding `path`, or None."""
    if shutil.which("git") is None:
        return None
    try:
        return Path(_git(path.parent, "rev-parse", "--show-toplevel"))
    except (GitError, OSError, subprocess.TimeoutExpired):
        return None


def is_dirty(top: Path, rel: str) -> bool:
    """Whether the file differs from HEAD (modified, staged or untracked); ignored files count as clean."""
    return bool(_git(top, "status", "--porcelain=v1", "--untracked-files=all", "--", rel))


def snapshot(batch_id: str, files: Mapping[Path, bytes]) -> tuple[dict[Path, dict[str, str]], list[str]]:
    """Snapshot the dirty ones among `files` (real path → current bytes); returns (path → record, notes)."""
    by_repo: dict[Path, dict[Path, bytes]] = {}
    for path, data in files.items():
        top = repo_of(path)
        if top is not None:
            by_repo.setdefault(top, {})[path] = data
    records: dict[Path, dict[str, str]] = {}
    notes: list[str] = []
    for top, members in by_repo.items():
        try:
            dirty = {p: d for p, d in members.items() if is_dirty(top, str(p.relative_to(top)))}
            if dirty:
                ref = _commit(top, batch_id, dirty)
                for p in dirty:
                    records[p] = {"repo": str(top), "ref": ref, "path": str(p.relative_to(top))}
        except (GitError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            notes.append(f"could not snapshot uncommitted changes in {top} ({exc}); the undo journal keeps them")
    return records, notes


def _commit(top: Path, batch_id: str, dirty: Mapping[Path, bytes]) -> str:
    with tempfile.TemporaryDirectory(prefix="cb-snap-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **_IDENTITY}
        try:
            head: str | None = _git(top, "rev-parse", "--verify", "-q", "HEAD^{commit}")
        except GitError:
            head = None
        _git(top, "read-tree", *(["HEAD"] if head else ["--empty"]), env=env)
        for path, data in dirty.items():
            blob = _git(top, "hash-object", "-w", "--no-filters", "--stdin", data=data)
            mode = "100755" if os.stat(path).st_mode & 0o111 else "100644"
            _git(top, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path.relative_to(top)}", env=env)
        tree = _git(top, "write-tree", env=env)
        names = ", ".join(str(p.relative_to(top)) for p in dirty)
        message = f"cb: your uncommitted {names}, saved before edit batch {batch_id}"
        commit = _git(top, "commit-tree", tree, *(["-p", head] if head else []), "-m", message, env=env)
        ref = SNAPSHOT_REF + batch_id
        _git(top, "update-ref", ref, commit)
        return ref
