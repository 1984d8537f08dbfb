"""The chat REPL in a real PTY (pexpect): answers stream, Ctrl-C cancels an answer and keeps the session,
slash commands with completion, history persists, Ctrl-D exits. Against the scripted server here (for a
stream slow enough to interrupt on cue); test_against_ulm_serve.py drives it against the real `ulm serve`.

Run: .venv/bin/python -m pytest tests/cb/test_repl.py -q
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from cb import paths, session
from cb.config import DEFAULT_MODEL
from tests.cb.scripted_server import Reply, ScriptedServer

CB = str(Path(sys.executable).parent / "cb")


def spawn_repl(base_url: str, cwd: Path, *args: str, **env: str) -> pexpect.spawn:
    """`cb` (with no arguments, or chat options) on a PTY (terminal position reports off: pexpect does not
    answer them)."""
    full = {**os.environ, "CB_BASE_URL": base_url, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1",
            "EDITOR": "true", **env}
    child = pexpect.spawn(CB, list(args), env=full, cwd=str(cwd), dimensions=(40, 120), timeout=30, encoding="utf-8")
    if os.environ.get("CB_TEST_PTY_LOG"):  # a transcript of the raw PTY bytes, for debugging
        child.logfile_read = open(os.environ["CB_TEST_PTY_LOG"], "a")  # noqa: SIM115 - lives as long as the child
    child.expect("Ctrl-D to quit")
    child.expect("›")
    return child


def quit_repl(child: pexpect.spawn) -> int:
    """Ctrl-D at the prompt. The caller has seen the prompt, but its last redraw can reach the PTY just before
    the REPL puts the terminal back in raw mode, and a Ctrl-D typed in that moment is taken by the cooked tty
    (seen once in a CI run on a loaded machine): a REPL still there after 5 s gets another Ctrl-D."""
    for _ in range(3):
        child.sendeof()
        if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=5) == 0:
            break
    else:
        child.expect(pexpect.EOF)  # a last wait at the spawn's timeout, then pexpect's own report
    child.close()
    return int(child.exitstatus)


@pytest.mark.integration
def test_chat_turns_cancel_and_exit(scripted: ScriptedServer, project: Path) -> None:
    scripted.enqueue(Reply(["Hello ", "there."]), Reply([f"tok{i} " for i in range(400)], delay=0.03),
                     Reply(["second answer"]))
    child = spawn_repl(scripted.base_url, project)
    child.send("hello\r")
    child.expect("there")
    child.expect(r"10 in · 2 out · 4 cached · TTFT \d+ ms")
    child.expect("›")
    child.send("tell me a long story\r")
    child.expect("tok3 ")
    child.sendintr()
    child.expect(r"\[answer cancelled\]")
    child.expect("›")
    child.send("and again\r")
    child.expect("second answer")
    child.expect("›")
    assert quit_repl(child) == 0
    # the cancelled turn is not in the conversation; the others are, in order
    contents = [m["content"] for m in session.current(project).messages()]
    assert contents == ["hello", "Hello there.", "and again", "second answer"]
    # the server saw the history of the kept turns only
    assert [m["content"] for m in scripted.requests[2]["body"]["messages"][1:]] == \
        ["hello", "Hello there.", "and again"]
    assert scripted.disconnects == 1  # Ctrl-C closed the stream
    assert "hello" in paths.history_file().read_text()


@pytest.mark.integration
def test_slash_commands_and_completion(scripted: ScriptedServer, project: Path) -> None:
    (project / "lib.py").write_text("y = 2\n")
    child = spawn_repl(scripted.base_url, project)
    child.send("/op\t")  # completes to /open
    child.send(" app.py lib.py\r")
    child.expect("opened app.py")
    child.expect("opened lib.py")
    child.expect("›")
    child.send("/files\r")
    child.expect("app.py\r\nlib.py")
    child.send("/close lib.py\r")
    child.expect("closed lib.py")
    child.send("/nope\r")
    child.expect("unknown command /nope")
    child.send("/help\r")
    child.expect("/session")
    child.send("/model\r")
    child.expect(rf"model {re.escape(DEFAULT_MODEL)} \(default\)")
    child.send("question\r")
    child.expect("ok")
    child.expect("›")
    child.send("/session new side\r")
    child.expect("new session")
    child.send("/clear\r")
    child.expect("conversation cleared")
    child.expect("›")
    child.sendintr()  # Ctrl-C at the prompt clears the line and keeps going
    child.send("/exit\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert '<file path="app.py"' in scripted.requests[0]["body"]["messages"][0]["content"]
    assert "lib.py" not in scripted.requests[0]["body"]["messages"][0]["content"]
    assert len(session.list_all(project)) == 2


@pytest.mark.integration
def test_chat_options_alone_open_the_repl_continuing_with_agents_md_in_the_meter(scripted: ScriptedServer,
                                                                                project: Path) -> None:
    (project / "AGENTS.md").write_text("Always answer in haiku.\n")
    talked = session.new(project, "talked")
    talked.append("user", "earlier question")
    session.new(project)  # current, but empty: -c continues the one with a conversation
    child = spawn_repl(scripted.base_url, project, "-c", "-s", "Be terse.")
    child.expect("0 files \\+ AGENTS")  # the context meter names the instruction file
    child.send("/files\r")
    child.expect(r"AGENTS.md  \(project instructions\)")
    child.send("next\r")
    child.expect("ok")
    child.expect("›")
    assert quit_repl(child) == 0
    system = scripted.requests[0]["body"]["messages"][0]["content"]
    assert "Be terse." in system and "1| Always answer in haiku." in system
    assert [m["content"] for m in scripted.requests[0]["body"]["messages"][1:]] == ["earlier question", "next"]
    assert session.current(project).id == talked.id


@pytest.mark.integration
def test_repl_needs_a_terminal(project: Path) -> None:
    from typer.testing import CliRunner

    from cb.cli import app

    result = CliRunner().invoke(app, ["chat"])
    assert result.exit_code == 2 and "needs a terminal" in result.stderr


@pytest.mark.integration
def test_proposed_edit_is_confirmed_applied_and_undone(scripted: ScriptedServer, project: Path) -> None:
    from tools.hashing import file_version

    before = (project / "app.py").read_bytes()
    block = f'<replace path="app.py" version="{file_version(before)}" start="2" end="2">\n' \
            '    return 3.14159 * r * r\n</replace>\n'
    scripted.enqueue(Reply(["More digits:\n", block]))
    child = spawn_repl(scripted.base_url, project)
    child.send("/open app.py\r")
    child.expect("opened app.py")
    child.expect("›")
    child.send("more precise pi\r")
    child.expect(r"\+    return 3\.14159 \* r \* r")
    child.expect(r"Apply to app\.py\?")
    child.send("y\r")
    child.expect("applied: app.py")
    child.expect("›")
    assert (project / "app.py").read_text() == "def area(r):\n    return 3.14159 * r * r\n"
    child.send("/undo\r")
    child.expect("undid batch")
    child.expect("›")
    assert (project / "app.py").read_bytes() == before
    assert quit_repl(child) == 0


@pytest.mark.integration
def test_slash_edit_sends_the_request_as_typed_and_an_answer_without_an_edit_goes_back(scripted: ScriptedServer,
                                                                                       project: Path) -> None:
    from cb import exchange
    from tools.hashing import file_version

    before = (project / "app.py").read_bytes()
    block = f'<replace path="app.py" version="{file_version(before)}">\n<old>\n    return 3.14 * r * r\n</old>\n' \
            '<new>\n    return 3.14159 * r * r\n</new>\n</replace>\n'
    scripted.enqueue(Reply(["Use more digits of pi."]), Reply([block]))
    child = spawn_repl(scripted.base_url, project)
    child.send("/edit\r")
    child.expect("usage: /edit REQUEST")
    child.expect("›")
    child.send("/open app.py\r")
    child.expect("opened app.py")
    child.expect("›")
    child.send("/edit use pi's \"digits\"\r")
    child.expect("asking the model to correct them")
    child.expect(r"Apply to app\.py\?")
    child.send("y\r")
    child.expect("applied: app.py")
    child.expect("›")
    assert (project / "app.py").read_text() == "def area(r):\n    return 3.14159 * r * r\n"
    first, second = (r["body"]["messages"] for r in scripted.requests)
    assert first[-1] == {"role": "user", "content": "use pi's \"digits\""}
    assert exchange.NO_EDIT in second[-1]["content"]
    assert quit_repl(child) == 0


@pytest.mark.integration
def test_run_tabs_and_copy(scripted: ScriptedServer, project: Path) -> None:
    from agentshell.client import Client

    scripted.enqueue(Reply(["Here:\n\n```sh\nls -la\n```\n"]))
    child = spawn_repl(scripted.base_url, project)
    try:
        child.send("/run t1 echo hi-from-tab\r")
        child.expect("started tab t1")
        child.expect("›")
        child.send("/tabs\r")
        child.expect(r"1 t1 +\w+ +.*echo hi-from-tab")
        child.expect("›")
        child.send("/copy\r")
        child.expect("nothing to copy yet")
        child.expect("›")
        child.send("show me\r")
        child.expect("-la")  # highlighted: styles sit between "ls" and "-la"
        child.expect("›")
        child.send("/copy code\r")
        child.expect(r"copied \d+ bytes via osc52")
        child.expect("›")
        assert quit_repl(child) == 0
    finally:
        with Client.connect(autostart=False) as sh:
            sh.shutdown()


@pytest.mark.integration
def test_pasted_lines_and_editor_input_arrive_whole(scripted: ScriptedServer, project: Path) -> None:
    editor = project / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf "written in the editor\\nsecond line\\n" > "$1"\n')
    editor.chmod(0o755)
    child = spawn_repl(scripted.base_url, project, EDITOR=str(editor), VISUAL=str(editor))
    child.send("\x1b[200~first pasted line\nsecond pasted line\x1b[201~")
    child.send("\r")
    child.expect("ok")
    child.expect("›")
    child.send("\x18\x05")  # Ctrl-X Ctrl-E: compose in $EDITOR
    child.expect("second line")
    child.send("\r")
    child.expect(r"\d+ in · \d+ out")
    child.expect("›")
    assert quit_repl(child) == 0
    asked = [r["body"]["messages"][-1]["content"] for r in scripted.requests]
    assert asked == ["first pasted line\nsecond pasted line", "written in the editor\nsecond line"]
