"""The undo journal (E12): exact bytes and mode back, created files deleted, refusal when a file moved on."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.tools.support import tree_state
from tools import CreateFile, InsertAfterEdit, Journal, SingleLineEdit, accept_all, apply_batch, file_version


def v(path: Path) -> str:
    return file_version(path.read_bytes())


def test_undo_restores_exact_bytes_and_mode_of_every_file(ws: Path, journal: Journal) -> None:
    a = ws / "a.txt"
    a.write_bytes(b"caf\xe9\r\nline 2\r\nno final newline")
    a.chmod(0o751)
    b = ws / "b.txt"
    b.write_bytes(b"b\n")
    before = tree_state(ws)
    result = apply_batch([SingleLineEdit("a.txt", v(a), 2, "changed"), InsertAfterEdit("b.txt", v(b), 1, "more")],
                         ws, journal=journal, confirm=accept_all)
    assert result.status == "applied"
    assert stat.S_IMODE(a.stat().st_mode) == 0o751
    a.chmod(0o700)  # a mode change after the edit: undo still puts back the mode from before the batch
    undone = journal.undo_last()
    assert undone.ok and set(undone.restored) == {"a.txt", "b.txt"}
    assert tree_state(ws) == before
    assert stat.S_IMODE(a.stat().st_mode) == 0o751
    assert [e.status for e in journal.entries()] == ["undone"]
    assert journal.undo_last().message() == "nothing to undo"


def test_undo_refuses_when_the_user_changed_a_file_after_cb_wrote_it(ws: Path, journal: Journal) -> None:
    a, b = ws / "a.txt", ws / "b.txt"
    a.write_bytes(b"a\n")
    b.write_bytes(b"b\n")
    apply_batch([SingleLineEdit("a.txt", v(a), 1, "A"), SingleLineEdit("b.txt", v(b), 1, "B")], ws,
                journal=journal, confirm=accept_all)
    b.write_bytes(b"B\nthe user's own work\n")
    undone = journal.undo_last()
    assert not undone.ok
    assert undone.message() == "b.txt: changed after cb wrote it; not undoing (nothing was changed)"
    assert a.read_bytes() == b"A\n" and b.read_bytes() == b"B\nthe user's own work\n"  # all or nothing
    assert [e.status for e in journal.entries()] == ["applied"]


def test_undo_deletes_created_files_and_their_new_folders_only_if_unchanged(ws: Path, journal: Journal) -> None:
    apply_batch([CreateFile("new/deep/x.py", "x = 1\n")], ws, journal=journal, confirm=accept_all)
    assert (ws / "new/deep/x.py").read_bytes() == b"x = 1\n"
    undone = journal.undo_last()
    assert undone.ok and undone.deleted == ("new/deep/x.py",)
    assert os.listdir(ws) == []

    apply_batch([CreateFile("y.py", "y = 1\n")], ws, journal=journal, confirm=accept_all)
    (ws / "y.py").write_bytes(b"y = 2  # edited by the user\n")
    refused = journal.undo_last()
    assert not refused.ok and "y.py: changed after cb created it" in refused.message()
    assert (ws / "y.py").exists()


def test_undo_of_a_file_deleted_since_is_refused(ws: Path, journal: Journal) -> None:
    a = ws / "a.txt"
    a.write_bytes(b"a\n")
    apply_batch([SingleLineEdit("a.txt", v(a), 1, "A")], ws, journal=journal, confirm=accept_all)
    a.unlink()
    assert "was deleted after cb wrote it" in journal.undo_last().message()


def test_undo_walks_back_batch_by_batch_and_by_id(ws: Path, journal: Journal) -> None:
    a = ws / "a.txt"
    a.write_bytes(b"0\n")
    for n in (1, 2, 3):
        assert apply_batch([SingleLineEdit("a.txt", v(a), 1, str(n))], ws, journal=journal,
                           confirm=accept_all).status == "applied"
    entries = journal.entries()
    assert [e.status for e in entries] == ["applied"] * 3
    assert journal.undo(entries[1].id).message().startswith("a.txt: changed after cb wrote it")
    assert journal.undo_last().ok and a.read_bytes() == b"2\n"
    assert journal.undo_last().ok and a.read_bytes() == b"1\n"
    assert journal.undo(entries[0].id).message() == f"batch {entries[0].id} is undone; nothing to undo"
    assert journal.undo("nope").message() == "no batch 'nope' in the undo journal"


def test_a_pending_entry_from_a_crash_undoes_only_the_files_that_were_written(ws: Path, journal: Journal) -> None:
    a, b = ws / "a.txt", ws / "b.txt"
    a.write_bytes(b"a\n")
    b.write_bytes(b"b\n")
    result = apply_batch([SingleLineEdit("a.txt", v(a), 1, "A"), SingleLineEdit("b.txt", v(b), 1, "B")], ws,
                         journal=journal, confirm=accept_all)
    # Simulate a kill after a.txt was replaced and before b.txt: b back to old bytes, entry still pending.
    b.write_bytes(b"b\n")
    entry_file = journal.directory / result.entry.id / "entry.json"
    raw = json.loads(entry_file.read_text())
    raw["status"] = "pending"
    entry_file.write_text(json.dumps(raw))
    undone = journal.undo_last()
    assert undone.ok and undone.restored == ("a.txt",)
    assert (a.read_bytes(), b.read_bytes()) == (b"a\n", b"b\n")


def test_the_journal_keeps_only_the_newest_entries(ws: Path, tmp_path: Path) -> None:
    small = Journal(tmp_path / "j", keep=3)
    a = ws / "a.txt"
    a.write_bytes(b"0\n")
    for n in range(5):
        apply_batch([SingleLineEdit("a.txt", v(a), 1, str(n))], ws, journal=small, confirm=accept_all)
    assert len(small.entries()) == 3
    assert len([d for d in (tmp_path / "j").iterdir() if d.is_dir()]) == 3


def test_journal_files_are_private(ws: Path, journal: Journal) -> None:
    a = ws / "a.txt"
    a.write_bytes(b"secret\n")
    result = apply_batch([SingleLineEdit("a.txt", v(a), 1, "x")], ws, journal=journal, confirm=accept_all)
    entry_dir = journal.directory / result.entry.id
    assert stat.S_IMODE(journal.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(entry_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in entry_dir.iterdir())


def test_an_unusable_journal_folder_applies_nothing(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the journal folder should be")
    a = ws / "a.txt"
    a.write_bytes(b"a\n")
    result = apply_batch([SingleLineEdit("a.txt", v(a), 1, "A")], ws, journal=Journal(tmp_path / "not-a-dir" / "j"),
                         confirm=accept_all)
    assert result.status == "failed" and "nothing was applied" in result.message()
    assert a.read_bytes() == b"a\n"


def test_an_undo_cut_short_can_be_run_again(ws: Path, journal: Journal) -> None:
    a, b = ws / "a.txt", ws / "b.txt"
    a.write_bytes(b"a\n")
    b.write_bytes(b"b\n")
    apply_batch([SingleLineEdit("a.txt", v(a), 1, "A"), SingleLineEdit("b.txt", v(b), 1, "B")], ws,
                journal=journal, confirm=accept_all)
    a.write_bytes(b"a\n")  # as if the first undo had restored a.txt and then died
    undone = journal.undo_last()
    assert undone.ok and undone.restored == ("b.txt",)
    assert (a.read_bytes(), b.read_bytes()) == (b"a\n", b"b\n")
