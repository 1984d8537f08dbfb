"""apply_batch on real files in a temp workspace: the E-cases of RELIABILITY.md §1.3 that need no subprocess.

Each test asserts exact bytes on disk, and on every refusal that nothing changed and no temp file is left.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from tests.tools.support import apply_text, tree_state, v, write
from tools import (
    InsertAfterEdit,
    Journal,
    LineReplaceEdit,
    Plan,
    SingleLineEdit,
    accept_all,
    apply_batch,
    plan_batch,
    refuse_all,
)

LINES10 = b"".join(b"line %d\n" % i for i in range(1, 11))


def test_single_replace_and_insert_edits_produce_exact_bytes(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.py", b"import os\n\ndef f():\n    return 1\n")
    ver = v(f)
    result = apply_text(ws, f"""
<edit path="a.py" version="{ver}" line="4">
    return 2
</edit>
<insert path="a.py" version="{ver}" after="1">
import sys
</insert>""", journal)
    assert result.status == "applied" and result.written == ("a.py",)
    assert f.read_bytes() == b"import os\nimport sys\n\ndef f():\n    return 2\n"
    assert result.plan.changes[0].summary == "replaces 1 line, inserts 1 line"


def test_e2_file_changed_while_the_user_was_deciding_is_refused_and_the_change_kept(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.txt", b"one\ntwo\n")

    def editor_saves_then_yes(plan: Plan):
        f.write_bytes(b"one\ntwo\nthree (saved by the editor)\n")
        return plan.proposals

    result = apply_batch([SingleLineEdit("a.txt", v(f), 1, "ONE\n")], ws, journal=journal,
                         confirm=editor_saves_then_yes)
    assert result.status == "refused"
    assert "changed on disk while you were deciding" in result.message()
    assert f.read_bytes() == b"one\ntwo\nthree (saved by the editor)\n"
    assert journal.entries() == []


def test_e2_created_file_that_appears_while_deciding_is_refused(ws: Path, journal: Journal) -> None:
    def someone_creates_it(plan: Plan):
        (ws / "new.txt").write_bytes(b"theirs\n")
        return plan.proposals

    result = apply_text(ws, '<create path="new.txt">\nmine\n</create>', journal, someone_creates_it)
    assert result.status == "refused" and (ws / "new.txt").read_bytes() == b"theirs\n"


def test_e3_stale_version_rejects_the_batch_before_any_write(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.txt", LINES10)
    seen = v(f)
    f.write_bytes(b"inserted above\n" + LINES10)
    before = tree_state(ws)
    asked = []
    result = apply_batch([SingleLineEdit("a.txt", seen, 4, "x\n")], ws, journal=journal,
                         confirm=lambda plan: asked.append(plan) or plan.proposals)
    assert result.status == "refused" and asked == []
    assert f"changed since the model saw it (it saw version '{seen}', the file is now {v(f)})" in result.message()
    assert tree_state(ws) == before


def test_e4_one_bad_hunk_of_five_applies_nothing(ws: Path, journal: Journal) -> None:
    a, b = write(ws / "a.txt", LINES10), write(ws / "b.txt", LINES10)
    before = tree_state(ws)
    proposals = [SingleLineEdit("a.txt", v(a), 1, "A\n"), SingleLineEdit("a.txt", v(a), 3, "C\n"),
                 LineReplaceEdit("a.txt", v(a), 9, 12, "bad range\n"), InsertAfterEdit("b.txt", v(b), 2, "x\n"),
                 SingleLineEdit("b.txt", v(b), 10, "J\n")]
    result = apply_batch(proposals, ws, journal=journal, confirm=accept_all)
    assert result.status == "refused"
    assert result.errors == ("a.txt: replace a.txt lines 9-12, but it has only 10 lines",)
    assert tree_state(ws) == before


def test_overlapping_edits_of_one_file_are_refused(ws: Path, journal: Journal) -> None:
    a = write(ws / "a.txt", LINES10)
    result = apply_batch([LineReplaceEdit("a.txt", v(a), 2, 5, ""), SingleLineEdit("a.txt", v(a), 4, "x")], ws,
                         journal=journal, confirm=accept_all)
    assert result.status == "refused" and "overlap" in result.message()
    assert a.read_bytes() == LINES10


def test_default_confirmation_refuses_and_a_raising_one_applies_nothing(ws: Path, journal: Journal) -> None:
    a = write(ws / "a.txt", LINES10)
    edit = [SingleLineEdit("a.txt", v(a), 1, "x")]
    assert apply_batch(edit, ws, journal=journal).status == "declined"
    assert apply_batch(edit, ws, journal=journal, confirm=refuse_all).status == "declined"

    def broken(plan: Plan):
        raise RuntimeError("terminal went away")

    result = apply_batch(edit, ws, journal=journal, confirm=broken)
    assert result.status == "failed" and "terminal went away" in result.message()
    assert a.read_bytes() == LINES10 and journal.entries() == []


def test_confirm_may_approve_a_subset_which_alone_is_applied(ws: Path, journal: Journal) -> None:
    a, b = write(ws / "a.txt", b"a\n"), write(ws / "b.txt", b"b\n")
    result = apply_batch([SingleLineEdit("a.txt", v(a), 1, "A"), SingleLineEdit("b.txt", v(b), 1, "B")], ws,
                         journal=journal, confirm=lambda plan: plan.changes[1].proposals)
    assert result.status == "applied" and result.written == ("b.txt",)
    assert (a.read_bytes(), b.read_bytes()) == (b"a\n", b"B\n")


@pytest.mark.parametrize("call", ["write", "fsync", "replace"])
def test_e6_write_errors_leave_every_file_intact_and_no_temp_files(ws: Path, journal: Journal,
                                                                  monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    a, b = write(ws / "a.txt", LINES10), write(ws / "b.txt", LINES10)
    before = tree_state(ws)
    real = getattr(os, call)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        # Let the journal's writes and the first file through; fail on b.txt.
        target = str(args[0]) if call != "write" else ""
        calls["n"] += 1
        if (call == "replace" and target.endswith(".tmp") and ".b.txt.cb-" in target) or (
                call != "replace" and _writing_b(ws)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, call, failing)
    result = apply_batch([SingleLineEdit("a.txt", v(a), 1, "A"), SingleLineEdit("b.txt", v(b), 1, "B")], ws,
                         journal=journal, confirm=accept_all)
    monkeypatch.undo()
    assert result.status == "failed"
    assert "b.txt: could not be written (No space left on device); nothing was changed" in result.message()
    assert tree_state(ws) == before
    assert [e.status for e in journal.entries()] == ["rolled-back"]


def _writing_b(ws: Path) -> bool:
    return any(p.name.startswith(".b.txt.cb-") for p in ws.iterdir())


def test_e7_non_utf8_file_round_trips_every_byte_outside_the_edit(ws: Path, journal: Journal) -> None:
    lines = [b"# caf\xe9 r\xe9sum\xe9\n"] + [b"x = %d\n" % i for i in range(100)] + [b"# na\xefve \x81\n"]
    f = write(ws / "latin.py", b"".join(lines))
    result = apply_batch([SingleLineEdit("latin.py", v(f), 51, "y = 'édité'")], ws, journal=journal,
                         confirm=accept_all)
    assert result.status == "applied"
    new = f.read_bytes()
    assert b"\xef\xbf\xbd" not in new
    expected = [*lines[:50], "y = 'édité'\n".encode("latin-1"), *lines[51:]]
    assert new == b"".join(expected)


def test_e7_text_the_files_encoding_cannot_hold_is_refused(ws: Path, journal: Journal) -> None:
    f = write(ws / "cp.txt", b"caf\xe9\n")
    result = apply_batch([SingleLineEdit("cp.txt", v(f), 1, "日本")], ws, journal=journal, confirm=accept_all)
    assert result.status == "refused" and "cp1252" in result.message()
    assert f.read_bytes() == b"caf\xe9\n"


@pytest.mark.parametrize(("old", "edit", "new"), [
    (b"a\r\nb\r\nc\r\n", SingleLineEdit("f", "", 2, "B\nB2"), b"a\r\nB\r\nB2\r\nc\r\n"),
    (b"a\r\nb\nc\r\nd\r\n", InsertAfterEdit("f", "", 1, "new"), b"a\r\nnew\r\nb\nc\r\nd\r\n"),
    (b"a\nb\r\nc\n", SingleLineEdit("f", "", 2, "B"), b"a\nB\r\nc\n"),
    (b"a\nb", SingleLineEdit("f", "", 2, "B"), b"a\nB"),
    (b"a\nb", InsertAfterEdit("f", "", 2, "c"), b"a\nb\nc"),
    (b"a\nb\nc", LineReplaceEdit("f", "", 2, 3, ""), b"a"),
    (b"\xef\xbb\xbfa\r\nb\r\n", InsertAfterEdit("f", "", 0, "top"), b"\xef\xbb\xbftop\r\na\r\nb\r\n"),
    (b"\tif x:\n\t\ty()\n", SingleLineEdit("f", "", 2, "\t\tz()"), b"\tif x:\n\t\tz()\n"),
    (b"", InsertAfterEdit("f", "", 0, "first"), b"first\n"),
    (b"a\rb\nc\n", SingleLineEdit("f", "", 2, "C"), b"a\rb\nC\n"),
])
def test_e8_line_endings_bom_final_newline_and_tabs_are_preserved(ws: Path, journal: Journal, old: bytes, edit,
                                                                  new: bytes) -> None:
    f = write(ws / "f", old)
    edit = type(edit)(**{**edit.__dict__, "version": v(f)})
    result = apply_batch([edit], ws, journal=journal, confirm=accept_all)
    assert result.status == "applied", result.message()
    assert f.read_bytes() == new


@pytest.mark.parametrize("mode", [0o755, 0o600, 0o640])
def test_e9_file_mode_is_kept(ws: Path, journal: Journal, mode: int) -> None:
    f = write(ws / "s.sh", b"echo hi\n", mode)
    assert apply_batch([SingleLineEdit("s.sh", v(f), 1, "echo bye")], ws, journal=journal,
                       confirm=accept_all).status == "applied"
    assert stat.S_IMODE(f.stat().st_mode) == mode and f.read_bytes() == b"echo bye\n"


def test_e9_a_symlinks_target_is_edited_and_the_link_stays(ws: Path, journal: Journal) -> None:
    real = write(ws / "real" / "conf.txt", b"a\n")
    (ws / "link.txt").symlink_to("real/conf.txt")
    result = apply_batch([SingleLineEdit("link.txt", v(real), 1, "b")], ws, journal=journal, confirm=accept_all)
    assert result.status == "applied"
    assert (ws / "link.txt").is_symlink() and os.readlink(ws / "link.txt") == "real/conf.txt"
    assert real.read_bytes() == b"b\n"


def test_e9_hard_linked_files_are_refused(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.txt", b"a\n")
    os.link(f, ws / "b.txt")
    result = apply_batch([SingleLineEdit("a.txt", v(f), 1, "b")], ws, journal=journal, confirm=accept_all)
    assert result.status == "refused" and "2 hard links" in result.message()
    assert f.read_bytes() == b"a\n"


def test_e9_fifo_and_device_are_refused_without_blocking(ws: Path, journal: Journal) -> None:
    os.mkfifo(ws / "pipe")
    (ws / "dev").symlink_to("/dev/null")
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(apply_batch(
        [SingleLineEdit("pipe", "00000000", 1, "x"), SingleLineEdit("dev", "00000000", 1, "x")], ws,
        journal=journal, confirm=accept_all)), daemon=True)
    worker.start()
    worker.join(5)
    assert outcome, "apply blocked on a FIFO"
    errors = outcome[0].errors
    assert any("pipe: is not a regular file" in e for e in errors)
    assert any("outside the workspace" in e for e in errors)  # /dev/null resolves outside the root


def test_e9_a_character_device_inside_the_root_is_refused(ws: Path, journal: Journal) -> None:
    try:
        os.mknod(ws / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    result = apply_batch([SingleLineEdit("null", "00000000", 1, "x")], ws, journal=journal, confirm=accept_all)
    assert result.status == "refused" and "null: is not a regular file" in result.message()


def test_e6_a_folder_where_the_temp_file_cannot_be_created_changes_nothing(ws: Path, journal: Journal,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A read-only folder, as root cannot be made one: refuse creating the temp file with EACCES.
    f = write(ws / "a.txt", LINES10)
    real_open = os.open

    def no_temp_files(path, flags, *args, **kwargs):
        if ".a.txt.cb-" in str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_temp_files)
    result = apply_batch([SingleLineEdit("a.txt", v(f), 1, "x")], ws, journal=journal, confirm=accept_all)
    monkeypatch.undo()
    assert result.status == "failed" and "a.txt: could not be written (Permission denied)" in result.message()
    assert tree_state(ws) == {"a.txt": LINES10}


def test_e9_read_only_file_is_refused(ws: Path, journal: Journal) -> None:
    f = write(ws / "ro.txt", b"a\n", 0o444)
    result = apply_batch([SingleLineEdit("ro.txt", v(f), 1, "b")], ws, journal=journal, confirm=accept_all)
    assert result.status == "refused" and "read-only" in result.message()


def test_e10_paths_outside_the_workspace_are_refused(ws: Path, journal: Journal, tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "x", b"keep\n")
    (ws / "sub").mkdir()
    (ws / "sub" / "link").symlink_to(outside.parent, target_is_directory=True)
    mtime = outside.stat().st_mtime_ns
    for name in ["../outside/x", str(outside), "sub/link/x", "a\x00b", "/etc/hosts"]:
        result = apply_batch([SingleLineEdit(name, v(outside), 1, "pwned")], ws, journal=journal, confirm=accept_all)
        assert result.status == "refused", name
        assert "outside the workspace" in result.message() or "NUL" in result.message()
    created = apply_text(ws, '<create path="sub/link/new">\nx\n</create>', journal)
    assert created.status == "refused"
    assert outside.read_bytes() == b"keep\n" and outside.stat().st_mtime_ns == mtime
    assert os.listdir(outside.parent) == ["x"]


def test_e11_destructive_rewrite_and_placeholders_carry_warnings(ws: Path) -> None:
    f = write(ws / "a.py", LINES10)
    shrink = plan_batch([LineReplaceEdit("a.py", v(f), 1, 10, "pass\n")], ws)
    assert shrink.changes[0].warnings == ("removes 9 of its 10 lines",)
    placeholder = plan_batch([LineReplaceEdit("a.py", v(f), 2, 3, "x = 1\n# ... rest of code ...\n")], ws)
    assert placeholder.changes[0].warnings == (
        "the edit at line 2 holds placeholder text instead of real lines: '# ... rest of code ...'",)
    fine = plan_batch([LineReplaceEdit("a.py", v(f), 2, 6, "x = 1\n")], ws)
    assert fine.changes[0].warnings == ()


def test_e13_binary_and_oversized_files_are_refused(ws: Path, journal: Journal) -> None:
    from tools import MAX_FILE_BYTES

    binary = write(ws / "b.bin", b"abc\x00def\n")
    big = ws / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    r1 = apply_batch([SingleLineEdit("b.bin", v(binary), 1, "x")], ws, journal=journal, confirm=accept_all)
    r2 = apply_batch([SingleLineEdit("big.txt", "00000000", 1, "x")], ws, journal=journal, confirm=accept_all)
    assert "looks binary" in r1.message()
    assert f"over the {MAX_FILE_BYTES:,}-byte limit" in r2.message()


def test_e13_a_million_line_file_is_edited_exactly(ws: Path, journal: Journal) -> None:
    data = b"".join(b"%d\n" % i for i in range(1_000_000))
    f = write(ws / "m.txt", data)
    result = apply_batch([SingleLineEdit("m.txt", v(f), 500_001, "edited")], ws, journal=journal, confirm=accept_all)
    assert result.status == "applied"
    assert f.read_bytes() == data.replace(b"\n500000\n", b"\nedited\n")


def test_e15_escape_sequences_are_visible_in_the_diff_and_written_as_approved(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.txt", b"safe\nrm -rf /\n")
    content = "ok\x1b[1A\x1b[2K\rhidden\u202eevil"
    shown = []
    result = apply_batch([SingleLineEdit("a.txt", v(f), 1, content)], ws, journal=journal,
                         confirm=lambda plan: shown.append(plan.changes[0].diff) or plan.proposals)
    assert "\x1b" not in shown[0] and "\r" not in shown[0] and "\u202e" not in shown[0]
    assert "+ok␛[1A␛[2K␍hidden⟨U+202E⟩evil" in shown[0]
    assert result.status == "applied"
    assert f.read_bytes() == content.encode() + b"\nrm -rf /\n"


def test_e16_applying_the_same_edit_twice_is_stale_the_second_time(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.txt", LINES10)
    edit = [InsertAfterEdit("a.txt", v(f), 3, "new")]
    assert apply_batch(edit, ws, journal=journal, confirm=accept_all).status == "applied"
    once = f.read_bytes()
    again = apply_batch(edit, ws, journal=journal, confirm=accept_all)
    assert again.status == "refused" and f.read_bytes() == once


def test_create_file_makes_folders_and_refuses_an_existing_path(ws: Path, journal: Journal) -> None:
    result = apply_text(ws, '<create path="pkg/sub/mod.py">\nx = 1\n</create>', journal)
    assert result.status == "applied" and (ws / "pkg/sub/mod.py").read_bytes() == b"x = 1\n"
    assert stat.S_IMODE((ws / "pkg/sub/mod.py").stat().st_mode) == 0o666 & ~_umask()
    again = apply_text(ws, '<create path="pkg/sub/mod.py">\ny\n</create>', journal)
    assert again.status == "refused" and "already exists" in again.message()


def test_edit_of_a_missing_file_is_refused(ws: Path, journal: Journal) -> None:
    result = apply_batch([SingleLineEdit("nope.txt", "00000000", 1, "x")], ws, journal=journal, confirm=accept_all)
    assert result.status == "refused" and "does not exist (a new file needs a create block)" in result.message()


def test_an_edit_that_changes_nothing_is_skipped_with_a_note(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.txt", b"same\n")
    result = apply_batch([SingleLineEdit("a.txt", v(f), 1, "same")], ws, journal=journal, confirm=accept_all)
    assert result.status == "nothing" and result.notes == ("a.txt: the proposed edits change nothing; skipped",)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_approving_an_edit_that_turned_into_a_no_op_writes_nothing(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.txt", b"same\n")
    no_op = SingleLineEdit("a.txt", v(f), 1, "same\n")
    result = apply_batch([SingleLineEdit("a.txt", v(f), 1, "other")], ws, journal=journal,
                         confirm=lambda plan: [no_op])
    assert result.status == "nothing" and journal.entries() == []
