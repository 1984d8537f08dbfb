"""cb.confirm.Confirmer: yes / no / all / edit / quit per file, default No, the extra warning prompt, no TTY.

Answers come from a scripted text stream (the Terminal's input), output goes to a rich Console on a
StringIO; the edit path runs a real editor command on the temp file.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from cb.confirm import Confirmer, Terminal
from tools import (
    Journal,
    LineReplaceEdit,
    SingleLineEdit,
    apply_batch,
    file_version,
    plan_batch,
)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (root / name).write_bytes(b"".join(b"%s line %d\n" % (name[0].encode(), i) for i in range(1, 13)))
    return root


def edits(ws: Path) -> list:
    out = []
    for name in ("a.txt", "b.txt", "c.txt"):
        out.append(SingleLineEdit(name, file_version((ws / name).read_bytes()), 2, f"{name} changed"))
    return out


def confirmer(ws: Path, answers: str, editor=None, terminal: bool = True) -> tuple[Confirmer, io.StringIO]:
    shown = io.StringIO()
    console = Console(file=shown, force_terminal=True, width=100)
    term = Terminal(io.StringIO(answers), shown) if terminal else None
    kwargs = {"editor": editor} if editor else {}
    return Confirmer(console, term, ws, **kwargs), shown


def chosen(result) -> list[str]:
    return [p.path for p in result]


def test_yes_no_and_enter_defaults_to_no(ws: Path) -> None:
    confirm, shown = confirmer(ws, "y\nn\n\n")
    assert chosen(confirm(plan_batch(edits(ws), ws))) == ["a.txt"]
    assert shown.getvalue().count("[y]es [n]o [a]ll [e]dit [q]uit (n)") == 3


def test_all_accepts_the_rest_without_asking(ws: Path) -> None:
    confirm, shown = confirmer(ws, "n\na\n")
    assert chosen(confirm(plan_batch(edits(ws), ws))) == ["b.txt", "c.txt"]
    assert shown.getvalue().count("Apply to") == 2


def test_quit_and_end_of_input_apply_nothing(ws: Path) -> None:
    for answers in ("y\nq\n", "y\n"):
        confirm, _ = confirmer(ws, answers)
        assert confirm(plan_batch(edits(ws), ws)) == ()


def test_unknown_answers_are_asked_again(ws: Path) -> None:
    confirm, shown = confirmer(ws, "maybe\nyes\nn\nn\n")
    assert chosen(confirm(plan_batch(edits(ws), ws))) == ["a.txt"]
    assert "please answer one of" in shown.getvalue()


def test_a_warned_change_needs_a_second_yes_whose_default_is_no(ws: Path) -> None:
    v = file_version((ws / "a.txt").read_bytes())
    destructive = plan_batch([LineReplaceEdit("a.txt", v, 1, 12, "# ... rest of code ...\n")], ws)
    assert len(destructive.changes[0].warnings) == 2
    for answers, expected in (("y\n\n", []), ("a\nn\n", []), ("y\ny\n", ["a.txt"])):
        confirm, shown = confirmer(ws, answers)
        assert chosen(confirm(destructive)) == expected
        assert "removes 11 of its 12 lines" in shown.getvalue() and "Apply anyway? [y/N]" in shown.getvalue()


def test_without_a_terminal_nothing_is_applied_and_it_says_so(ws: Path) -> None:
    confirm, shown = confirmer(ws, "", terminal=False)
    assert confirm(plan_batch(edits(ws), ws)) == ()
    assert "no terminal to confirm on" in shown.getvalue()


def test_proposed_escape_sequences_are_shown_visibly_never_raw(ws: Path) -> None:
    v = file_version((ws / "a.txt").read_bytes())
    plan = plan_batch([SingleLineEdit("a.txt", v, 3, "ok\x1b[1A\x1b[2K\x1b]52;c;ZXZpbA==\x07\u202e")], ws)
    confirm, shown = confirmer(ws, "n\n")
    confirm(plan)
    out = shown.getvalue()
    assert "\x1b[1A" not in out and "\x1b[2K" not in out and "\x1b]52" not in out and "\u202e" not in out
    assert "ok␛[1A␛[2K␛]52;c;ZXZpbA==␇⟨U+202E⟩" in out


def test_edit_in_editor_replans_shows_the_new_diff_and_applies_what_was_approved(ws: Path, tmp_path: Path) -> None:
    seen = []

    def editor(text: str) -> str:
        seen.append(text)
        return text.replace("a.txt changed", "a.txt edited by hand")

    confirm, shown = confirmer(ws, "e\ny\nn\nn\n", editor=editor)
    result = apply_batch(edits(ws), ws, journal=Journal(tmp_path / "j"), confirm=confirm)
    assert seen[0].startswith('<edit path="a.txt" version="')
    assert "+a.txt edited by hand" in shown.getvalue()
    assert result.status == "applied" and result.written == ("a.txt",)
    assert (ws / "a.txt").read_bytes().split(b"\n")[1] == b"a.txt edited by hand"


def test_an_unusable_edit_is_reported_and_the_original_asked_again(ws: Path) -> None:
    confirm, shown = confirmer(ws, "e\ny\nn\nn\n", editor=lambda text: "<edit path='a.txt'>oops</edit>")
    assert [p.content for p in confirm(plan_batch(edits(ws), ws))] == ["a.txt changed"]
    assert "the edited proposal was not used (line 1: <edit> needs version= and line=)" in shown.getvalue()


def test_the_real_editor_command_runs_on_a_temp_file(ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cb.confirm import run_editor

    script = tmp_path / "fake-editor"
    script.write_text(f"#!{sys.executable}\nimport sys, pathlib\np = pathlib.Path(sys.argv[-1])\n"
                      "p.write_text(p.read_text().replace('before', 'after'))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("VISUAL", f"{script} --wait")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # re-read TMPDIR
    try:
        assert run_editor("text before\n") == "text after\n"
    finally:
        tempfile.tempdir = None
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".cb-edit.txt")]
