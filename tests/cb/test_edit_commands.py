"""`cb apply` and `cb undo` end to end: Typer's runner for the non-interactive paths, a real PTY (pexpect,
with pyte as the screen oracle) for the interactive one, and a session without a terminal for the refusal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pyte
import pytest
from typer.testing import CliRunner

from cb.cli import app
from tools import file_version

CB = str(Path(sys.executable).with_name("cb"))
runner = CliRunner()


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.py").write_bytes(b"import os\r\n\r\ndef area(r):\r\n    return 3.14 * r * r\r\n")
    monkeypatch.chdir(root)
    return root


def answer(ws: Path, body: str = "    return math.pi * r * r", line: int = 4) -> Path:
    version = file_version((ws / "app.py").read_bytes())
    path = ws.parent / "answer.txt"
    path.write_text(f'Use math.pi:\n\n<edit path="app.py" version="{version}" line="{line}">\n{body}\n</edit>\n'
                    f'<insert path="app.py" version="{version}" after="1">\nimport math\n</insert>\n')
    return path


AFTER = b"import os\r\nimport math\r\n\r\ndef area(r):\r\n    return math.pi * r * r\r\n"
BEFORE = b"import os\r\n\r\ndef area(r):\r\n    return 3.14 * r * r\r\n"


def test_apply_yes_applies_and_undo_restores_exact_bytes(ws: Path) -> None:
    result = runner.invoke(app, ["apply", str(answer(ws)), "--yes"])
    assert result.exit_code == 0, result.output
    assert "app.py: replaces 1 line, inserts 1 line" in result.output and "applied: app.py" in result.output
    assert (ws / "app.py").read_bytes() == AFTER
    listed = runner.invoke(app, ["undo", "--list"])
    assert listed.exit_code == 0 and "applied" in listed.output and "app.py" in listed.output
    undone = runner.invoke(app, ["undo"])
    assert undone.exit_code == 0 and "restored app.py" in undone.output
    assert (ws / "app.py").read_bytes() == BEFORE
    again = runner.invoke(app, ["undo"])
    assert again.exit_code == 4 and "nothing to undo" in again.output


def test_apply_reads_stdin_and_honours_root(ws: Path, tmp_path: Path) -> None:
    text = answer(ws).read_text()
    os.chdir(tmp_path)
    result = runner.invoke(app, ["apply", "-", "--yes", "--root", str(ws)], input=text)
    assert result.exit_code == 0, result.output
    assert (ws / "app.py").read_bytes() == AFTER


def test_dry_run_shows_the_diff_and_writes_nothing(ws: Path) -> None:
    result = runner.invoke(app, ["apply", str(answer(ws)), "--dry-run"])
    assert result.exit_code == 0
    assert "-    return 3.14 * r * r" in result.output and "+    return math.pi * r * r" in result.output
    assert (ws / "app.py").read_bytes() == BEFORE


def test_stale_answer_is_refused_with_exit_4(ws: Path) -> None:
    path = answer(ws)
    (ws / "app.py").write_bytes(BEFORE + b"# saved meanwhile\r\n")
    result = runner.invoke(app, ["apply", str(path), "--yes"])
    assert result.exit_code == 4
    assert "app.py: changed since the model saw it" in result.output
    assert (ws / "app.py").read_bytes() == BEFORE + b"# saved meanwhile\r\n"


def test_malformed_blocks_apply_nothing(ws: Path) -> None:
    path = answer(ws)
    path.write_text(path.read_text() + '<replace path="app.py" start="1">\nx\n</replace>\n')
    result = runner.invoke(app, ["apply", str(path), "--yes"])
    assert result.exit_code == 4
    assert "line 9: <replace> needs version= and end=" in result.output
    assert (ws / "app.py").read_bytes() == BEFORE


def test_warned_change_needs_force_with_yes(ws: Path) -> None:
    path = answer(ws, body="    # ... rest of code ...")
    refused = runner.invoke(app, ["apply", str(path), "--yes"])
    assert refused.exit_code == 3 and "add --force" in refused.output
    assert (ws / "app.py").read_bytes() == BEFORE
    forced = runner.invoke(app, ["apply", str(path), "--yes", "--force"])
    assert forced.exit_code == 0 and b"rest of code" in (ws / "app.py").read_bytes()


def test_nothing_proposed_and_run_proposals_are_reported(ws: Path, tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("Just an explanation.\n<run tab='t'>make test</run>\n")
    result = runner.invoke(app, ["apply", str(path)])
    assert result.exit_code == 0
    assert "skipped: run 'make test'" in result.output and "no edits proposed" in result.output


def test_unreadable_or_non_utf8_answers_are_one_line_errors(ws: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["apply", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 1 and "cannot read" in missing.output and "Traceback" not in missing.output
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9")
    latin = runner.invoke(app, ["apply", str(tmp_path / "latin.txt")])
    assert latin.exit_code == 4 and "is not UTF-8 text" in latin.output


@pytest.mark.integration
def test_without_a_terminal_and_without_yes_nothing_is_applied(ws: Path) -> None:
    path = answer(ws)
    proc = subprocess.run([CB, "apply", str(path)], cwd=ws, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, start_new_session=True, timeout=60)  # no controlling terminal at all
    assert proc.returncode == 3
    assert "no terminal to confirm on" in proc.stdout
    assert (ws / "app.py").read_bytes() == BEFORE


def spawn(ws: Path, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    full_env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "50", **(env or {})}
    return pexpect.spawn(CB, ["apply", *args], cwd=str(ws), env=full_env, dimensions=(50, 120), timeout=30)


@pytest.mark.integration
def test_interactive_yes_on_a_real_terminal(ws: Path) -> None:
    child = spawn(ws, str(answer(ws)))
    child.expect(r"Apply to app\.py\? \[y\]es \[n\]o \[a\]ll \[e\]dit \[q\]uit \(n\): ")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (ws / "app.py").read_bytes() == AFTER


@pytest.mark.integration
def test_interactive_default_is_no(ws: Path) -> None:
    child = spawn(ws, str(answer(ws)))
    child.expect(r"\(n\): ")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3 and (ws / "app.py").read_bytes() == BEFORE


@pytest.mark.integration
def test_e15_hidden_line_attack_is_visible_on_the_screen_and_written_as_approved(ws: Path) -> None:
    # The proposal tries to erase the diff line above it and draw a harmless one in its place.
    body = "    return 0\x1b[1A\x1b[2K\r+    return math.pi * r * r"
    child = spawn(ws, str(answer(ws, body=body)))
    child.expect(r"\(n\): ")
    screen = pyte.Screen(120, 50)
    pyte.ByteStream(screen).feed(child.before + child.after)
    shown = "\n".join(screen.display)
    assert "+    return 0␛[1A␛[2K␍+    return math.pi * r * r" in shown
    assert "-    return 3.14 * r * r" in shown
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (ws / "app.py").read_bytes().split(b"\r\n")[4] == body.encode()


@pytest.mark.integration
def test_interactive_edit_runs_the_editor_then_asks_again(ws: Path, tmp_path: Path) -> None:
    editor = tmp_path / "ed"
    editor.write_text(f"#!{sys.executable}\nimport sys, pathlib\np = pathlib.Path(sys.argv[-1])\n"
                      "p.write_text(p.read_text().replace('math.pi', '3.14159'))\n")
    editor.chmod(0o755)
    child = spawn(ws, str(answer(ws)), env={"EDITOR": str(editor), "VISUAL": ""})
    child.expect(r"\(n\): ")
    child.sendline("e")
    child.expect(r"\+    return 3\.14159 \* r \* r")
    child.expect(r"\(n\): ")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (ws / "app.py").read_bytes() == AFTER.replace(b"math.pi", b"3.14159")


@pytest.mark.integration
def test_piped_answer_is_confirmed_on_the_controlling_terminal(ws: Path) -> None:
    path = answer(ws)
    child = pexpect.spawn("/bin/sh", ["-c", f"cat '{path}' | '{CB}' apply -"], cwd=str(ws),
                          env={**os.environ, "TERM": "xterm"}, dimensions=(50, 120), timeout=30)
    child.expect(r"Apply to app\.py\? .*\(n\): ")
    child.sendline("a")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (ws / "app.py").read_bytes() == AFTER
