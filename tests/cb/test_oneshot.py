"""`cb "question"`: answer once, piped stdin as context, edits (--yes, pending, stale), --json, exit codes.

Against the scripted server (tests/cb/scripted_server.py) via CB_BASE_URL; the same paths run against the
real `ulm serve` in test_against_ulm_serve.py.

Run: .venv/bin/python -m pytest tests/cb/test_oneshot.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cb import session
from cb.cli import app
from tests.cb.scripted_server import Reply, ScriptedServer
from tools.hashing import file_version

ESC_OR_C1 = re.compile(r"[\x1b\x80-\x9f]")


@pytest.fixture
def runner(scripted: ScriptedServer, project: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CB_BASE_URL", scripted.base_url)
    monkeypatch.setenv("CB_MODEL", "scripted")
    return CliRunner()


def _system(scripted: ScriptedServer, i: int = -1) -> str:
    return scripted.requests[i]["body"]["messages"][0]["content"]


def test_answers_once_and_records_the_turn(runner: CliRunner, scripted: ScriptedServer, project: Path) -> None:
    scripted.enqueue(Reply(["The ", "answer."]))
    result = runner.invoke(app, ["why", "does", "it", "fail?"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "The answer.\n"
    assert "10 in" in result.stderr and "2 out" in result.stderr and "4 cached" in result.stderr
    body = scripted.requests[0]["body"]
    assert body["messages"][-1] == {"role": "user", "content": "why does it fail?"}
    assert session.current(project).messages()[-1] == {"role": "assistant", "content": "The answer."}


def test_piped_stdin_is_context(runner: CliRunner, scripted: ScriptedServer) -> None:
    result = runner.invoke(app, ["write the commit message"], input="diff --git a/x b/x\n+new line\n")
    assert result.exit_code == 0
    assert "<stdin>\ndiff --git a/x b/x\n+new line\n</stdin>" in _system(scripted)


def test_piped_stdin_alone_is_the_question(runner: CliRunner, scripted: ScriptedServer) -> None:
    assert runner.invoke(app, [], input="what is 2+2?\n").exit_code == 0
    assert scripted.requests[0]["body"]["messages"][-1]["content"] == "what is 2+2?"


def test_no_question_at_all_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["ask"], input="")
    assert result.exit_code == 2 and "no question given" in result.stderr


def test_open_files_are_in_the_prompt_with_their_version(runner: CliRunner, scripted: ScriptedServer,
                                                         project: Path) -> None:
    runner.invoke(app, ["open", "app.py"])
    runner.invoke(app, ["q"])
    version = file_version((project / "app.py").read_bytes())
    assert f'<file path="app.py" version="{version}" lines="2">\n1| def area(r):' in _system(scripted)


def _replace_block(project: Path, version: str | None = None) -> str:
    v = version or file_version((project / "app.py").read_bytes())
    return f'Use math.pi:\n<replace path="app.py" version="{v}" start="2" end="2">\n' \
           '    return math.pi * r * r\n</replace>\n'


def test_edits_without_a_terminal_print_the_diff_and_exit_3(runner: CliRunner, scripted: ScriptedServer,
                                                            project: Path) -> None:
    before = (project / "app.py").read_bytes()
    scripted.enqueue(Reply([_replace_block(project)]))
    result = runner.invoke(app, ["use pi"])
    assert result.exit_code == 3, result.output
    assert "-    return 3.14 * r * r\n+    return math.pi * r * r" in result.stdout
    assert (project / "app.py").read_bytes() == before
    saved = re.search(r"cb apply (\S+)", result.stderr)
    assert saved and Path(saved.group(1)).read_text().startswith("Use math.pi")


def test_yes_applies_edits(runner: CliRunner, scripted: ScriptedServer, project: Path) -> None:
    scripted.enqueue(Reply([_replace_block(project)]))
    result = runner.invoke(app, ["use pi", "--yes"])
    assert result.exit_code == 0, result.output
    assert (project / "app.py").read_text() == "def area(r):\n    return math.pi * r * r\n"
    assert "applied: app.py" in result.stderr


def test_stale_version_is_refused_with_exit_4(runner: CliRunner, scripted: ScriptedServer, project: Path) -> None:
    before = (project / "app.py").read_bytes()
    scripted.enqueue(Reply([_replace_block(project, version="deadbeef")]))
    result = runner.invoke(app, ["use pi", "-y"])
    assert result.exit_code == 4
    assert (project / "app.py").read_bytes() == before


def test_shell_commands_are_never_run_by_yes(runner: CliRunner, scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(['<run tab="t">touch pwned</run>\n']))
    result = runner.invoke(app, ["run it", "--yes"])
    assert result.exit_code == 0
    assert "proposed command (not run): [t] touch pwned" in result.stderr
    assert not Path("pwned").exists()


def test_json_result(runner: CliRunner, scripted: ScriptedServer, project: Path) -> None:
    scripted.enqueue(Reply([_replace_block(project)]))
    result = runner.invoke(app, ["use pi", "--json"])
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert data["answer"].startswith("Use math.pi") and data["applied"] is False
    assert data["edits"] == ["replace app.py lines 2-2"]
    assert data["usage"]["prompt_tokens"] == 10 and data["usage"]["cached_tokens"] == 4
    assert "+    return math.pi" in data["diff"]


def test_escape_sequences_in_the_answer_never_reach_stdout(runner: CliRunner, scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(["safe \x1b", "]52;c;aGk=\x07 \x9b2J \x1b[2J done"]))
    result = runner.invoke(app, ["q"])
    assert result.exit_code == 0
    assert not ESC_OR_C1.search(result.stdout)
    assert "␛]52;c;aGk=␇" in result.stdout


def test_fresh_leaves_the_conversation_out(runner: CliRunner, scripted: ScriptedServer) -> None:
    runner.invoke(app, ["first"])
    runner.invoke(app, ["second"])
    assert [m["content"] for m in scripted.requests[1]["body"]["messages"][1:]] == ["first", "ok", "second"]
    runner.invoke(app, ["third", "--fresh"])
    assert [m["content"] for m in scripted.requests[2]["body"]["messages"][1:]] == ["third"]


def test_server_errors_are_one_line_with_exit_1(runner: CliRunner, scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(status=401, error="bad key"))
    result = runner.invoke(app, ["q"])
    assert result.exit_code == 1
    assert result.stderr.startswith("cb: the server refused the API key") and result.stderr.count("\n") == 1


def test_unreachable_server_is_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_BASE_URL", "http://127.0.0.1:9/v1")
    result = CliRunner().invoke(app, ["q"])
    assert result.exit_code == 1 and "cannot reach the model server at http://127.0.0.1:9/v1" in result.stderr


@pytest.mark.integration
def test_agentshell_tab_tails_are_context(runner: CliRunner, scripted: ScriptedServer) -> None:
    from agentshell.client import Client

    with Client.connect() as sh:
        try:
            tab = sh.run("echo tab-output-marker-42", name="marker")
            sh.wait(tab.id, exit=True, timeout=20)
            result = runner.invoke(app, ["what happened?"])
        finally:
            sh.shutdown()
    assert result.exit_code == 0, result.output
    system = _system(scripted)
    assert '<tab name="marker (' in system and "tab-output-marker-42" in system
