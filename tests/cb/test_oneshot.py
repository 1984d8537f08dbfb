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
    stale = _replace_block(project, version="deadbeef")
    scripted.enqueue(Reply([stale]), Reply([stale]))  # the repair round (edit_retries = 1) gets it wrong again
    result = runner.invoke(app, ["use pi", "-y"])
    assert result.exit_code == 4 and len(scripted.requests) == 2
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


def _scripted_tokens(messages: list[dict[str, str]]) -> int:
    """The prompt's size by the scripted server's tokenizer, with cb's allowance for the chat template."""
    return sum(sum(1 + len(w) // 8 for w in m["content"].split()) + 8 for m in messages)


def _overflow(n_prompt_tokens: int, n_ctx: int) -> Reply:
    return Reply(status=400, body={"error": {"message": "the request exceeds the available context size",
                                             "type": "exceed_context_size_error",
                                             "n_prompt_tokens": n_prompt_tokens, "n_ctx": n_ctx}})


def test_a_prompt_the_server_finds_too_long_is_cut_further_and_sent_again(runner: CliRunner, project: Path,
                                                                          scripted: ScriptedServer) -> None:
    (project / "big.py").write_text("".join(f"value_{i} = compute({i}, 'some text')\n" for i in range(3000)))
    runner.invoke(app, ["open", "big.py"])
    # the server's context is smaller than it reported (4096): it says so, and cb fits the prompt to it
    scripted.enqueue(_overflow(3900, 1024), Reply(["ok"]))
    result = runner.invoke(app, ["summarise big.py", "--json", "--max-tokens", "64"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    first, second = (r["body"] for r in scripted.requests)
    assert data["answer"] == "ok" and data["usage"]["context_length"] == 1024
    # the second try fits that context (a cut's size is an estimate: the answer's room may lose a little)
    assert _scripted_tokens(first["messages"]) > 3000 and 700 < _scripted_tokens(second["messages"]) < 1024
    (cut,) = data["usage"]["context_cuts"]
    assert re.fullmatch(r"\d+ lines of big\.py not shown", cut)


def test_a_low_estimate_is_corrected_by_the_servers_count(runner: CliRunner, project: Path,
                                                          scripted: ScriptedServer) -> None:
    (project / "big.py").write_text("".join(f"value_{i} = compute({i}, 'some text')\n" for i in range(3000)))
    runner.invoke(app, ["open", "big.py"])
    # a server whose tokenizer counts 600 tokens more than cb's estimate, in OpenAI's words
    scripted.enqueue(Reply(status=400, body={"error": {
        "message": "This model's maximum context length is 4096 tokens. However, your messages resulted in "
                   "4600 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}),
        Reply(["ok"]))
    result = runner.invoke(app, ["summarise big.py", "--max-tokens", "64"])
    assert result.exit_code == 0, result.output
    first, second = (_scripted_tokens(r["body"]["messages"]) for r in scripted.requests)
    # counted as the server counts (its excess on the first try), the second try leaves the answer its room
    assert first > 3500 and second + (4600 - first) <= 4096 - 64 and second > 3000
    shown = int(re.search(r"context (\d+)/4096", result.stderr).group(1))  # the estimate, with the correction
    assert second + (4600 - first) <= shown <= 4096 - 64


def test_a_prompt_still_too_long_after_the_retries_is_one_line(runner: CliRunner, scripted: ScriptedServer,
                                                                project: Path) -> None:
    (project / "big.py").write_text("".join(f"value_{i} = compute({i}, 'some text')\n" for i in range(3000)))
    runner.invoke(app, ["open", "big.py"])
    scripted.enqueue(*[_overflow(4100, 4096)] * 3)
    result = runner.invoke(app, ["q"])
    assert result.exit_code == 1 and len(scripted.requests) == 3
    assert result.stderr == "cb: the server answered 400: the request exceeds the available context size\n"
    scripted.enqueue(_overflow(50_000, 4096))  # no cut could fit that: no retry
    result = runner.invoke(app, ["q"])
    assert result.exit_code == 1 and len(scripted.requests) == 4
    assert result.stderr == "cb: the server answered 400: the request exceeds the available context size\n"


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
