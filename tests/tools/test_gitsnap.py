"""E1: in a git repo, a dirty target is snapshotted before cb writes it; other dirty files are untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tools import Journal, SingleLineEdit, accept_all, apply_batch, file_version

pytestmark = pytest.mark.integration


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(ws: Path) -> Path:
    git(ws, "init", "-q")
    git(ws, "config", "user.email", "u@example.com")
    git(ws, "config", "user.name", "U")
    (ws / "a.txt").write_text("a1\na2\na3\n")
    (ws / "b.txt").write_text("b1\n")
    git(ws, "add", ".")
    git(ws, "commit", "-qm", "base")
    return ws


def test_e1_dirty_target_is_snapshotted_and_other_dirty_files_untouched(repo: Path, journal: Journal) -> None:
    (repo / "a.txt").write_text("a1\nUSER\na3\n")
    (repo / "b.txt").write_text("b1\nuser b\n")
    head = git(repo, "rev-parse", "HEAD")
    staged = git(repo, "diff", "--cached")
    data = (repo / "a.txt").read_bytes()
    result = apply_batch([SingleLineEdit("a.txt", file_version(data), 3, "CB")], repo, journal=journal,
                         confirm=accept_all)
    assert result.status == "applied"
    snap = result.entry.files[0].snapshot
    ref = snap["ref"]
    assert snap["path"] == "a.txt" and ref == f"refs/cb/snapshots/{result.entry.id}"
    # The snapshot holds exactly the user's version, on top of HEAD, and nothing about b.txt.
    assert git(repo, "show", f"{ref}:a.txt") == "a1\nUSER\na3\n"
    assert git(repo, "diff", "--name-only", "HEAD", ref).split() == ["a.txt"]
    assert git(repo, "rev-parse", f"{ref}^") == head
    # HEAD, the index and b.txt are untouched; cb's change is in the work tree.
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "diff", "--cached") == staged
    assert (repo / "b.txt").read_text() == "b1\nuser b\n"
    assert sorted(git(repo, "status", "--porcelain").split("\n")[:-1]) == [" M a.txt", " M b.txt"]
    assert (repo / "a.txt").read_text() == "a1\nUSER\nCB\n"


def test_clean_and_untracked_files(repo: Path, journal: Journal) -> None:
    clean = (repo / "a.txt").read_bytes()
    (repo / "new.txt").write_text("untracked\n")
    result = apply_batch([SingleLineEdit("a.txt", file_version(clean), 1, "x"),
                          SingleLineEdit("new.txt", file_version(b"untracked\n"), 1, "y")], repo, journal=journal,
                         confirm=accept_all)
    files = {f.shown: f.snapshot for f in result.entry.files}
    assert files["a.txt"] is None  # committed content is already recoverable from HEAD
    assert git(repo, "show", f"{files['new.txt']['ref']}:new.txt") == "untracked\n"


def test_a_repo_without_commits_still_gets_a_snapshot(ws: Path, journal: Journal) -> None:
    git(ws, "init", "-q")
    (ws / "f.txt").write_text("mine\n")
    result = apply_batch([SingleLineEdit("f.txt", file_version(b"mine\n"), 1, "cb")], ws, journal=journal,
                         confirm=accept_all)
    ref = result.entry.files[0].snapshot["ref"]
    assert git(ws, "show", f"{ref}:f.txt") == "mine\n"


def test_outside_git_there_is_no_snapshot_and_undo_still_works(ws: Path, journal: Journal) -> None:
    (ws / "f.txt").write_text("mine\n")
    result = apply_batch([SingleLineEdit("f.txt", file_version(b"mine\n"), 1, "cb")], ws, journal=journal,
                         confirm=accept_all)
    assert result.entry.files[0].snapshot is None
    assert journal.undo_last().ok and (ws / "f.txt").read_text() == "mine\n"
