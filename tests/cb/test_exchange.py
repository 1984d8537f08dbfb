"""How cb asks for edits (cb.exchange), end to end through `cb "question"` against the scripted server passing
for ulm serve, llama.cpp, OpenAI or an unknown server: the grammar goes only to a server that says it takes
one (or with grammar = on), the server's facts are asked once; tool calls are offered where the server takes
them and their streamed deltas become the edits; a refused grammar is asked again plainly; an answer whose
edits cannot be applied goes back to the model once with the errors, and the second answer is used.

Run: .venv/bin/python -m pytest tests/cb/test_exchange.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cb import config, exchange, session
from cb.backend import Backend, Done, ServerFeatures
from cb.chat import Chat
from cb.cli import app
from cb.grammar import edit_grammar
from cb.render import Out
from tests.cb.scripted_server import Reply, ScriptedServer
from tools import OpenFile, tool_schemas
from tools.format import INSTRUCTIONS, TOOL_CALL_INSTRUCTIONS
from tools.hashing import file_version

ROOT = Path(__file__).resolve().parents[2]
PI = "def area(r):\n    return math.pi * r * r\n"


def serve(owned_by: str = "tests", props: dict[str, Any] | None = None) -> Iterator[ScriptedServer]:
    with ScriptedServer(owned_by=owned_by, props=props) as server:
        yield server


@pytest.fixture
def ulm() -> Iterator[ScriptedServer]:
    yield from serve("ulm", {"grammar": True})


def invoke(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> Any:
    monkeypatch.setenv("CB_BASE_URL", server.base_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    assert runner.invoke(app, ["open", "app.py"]).exit_code == 0
    return runner.invoke(app, list(args))


def replace_block(project: Path, old: str, new: str) -> str:
    version = file_version((project / "app.py").read_bytes())
    return f'<replace path="app.py" version="{version}">\n<old>\n{old}</old>\n<new>\n{new}</new>\n</replace>\n'


@pytest.mark.parametrize(("owned_by", "props", "setting", "sent"), [
    ("ulm", {"grammar": True}, "auto", True),
    ("ulm", {"grammar": True}, "off", False),
    ("ulm", {}, "auto", False),  # ulm serve without constrained decoding
    ("ulm", None, "auto", False),  # no /props at all
    ("tests", None, "auto", False),
    ("tests", None, "on", True),
])
def test_the_grammar_of_the_open_files_goes_only_to_a_server_that_takes_one(
        project: Path, monkeypatch: pytest.MonkeyPatch, owned_by: str, props: dict[str, Any] | None, setting: str,
        sent: bool) -> None:
    for server in serve(owned_by, props):
        result = invoke(server, monkeypatch, "what is r?", CB_GRAMMAR=setting)
        assert result.exit_code == 0, result.output
        body = server.requests[0]["body"]
        assert ("grammar" in body) is sent and "tools" not in body
        if sent:
            assert body["grammar"] == edit_grammar([OpenFile.from_bytes("app.py", (project / "app.py").read_bytes())])
        assert INSTRUCTIONS in body["messages"][0]["content"]


def test_the_grammar_flag_overrides_the_setting_and_a_bad_value_is_one_line(ulm: ScriptedServer, project: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke(ulm, monkeypatch, "q", "--grammar", "off", CB_GRAMMAR="on").exit_code == 0
    assert "grammar" not in ulm.requests[0]["body"]
    bad = CliRunner().invoke(app, ["q", "--grammar", "sometimes"])
    assert bad.exit_code == 1 and bad.stderr.strip() == "cb: grammar must be one of auto, on, off, not 'sometimes'"


def test_the_servers_facts_are_asked_once_per_connection(ulm: ScriptedServer, project: Path) -> None:
    settings = config.load({"base_url": ulm.base_url})
    with Chat(settings, session.current(project), Out()) as chat:
        for _ in range(3):
            chat.ask("q", show=False)
        assert chat.backend().features() == ServerFeatures("ulm", grammar=True)
    assert ulm.gets.count("/props") == 1 and ulm.gets.count("/v1/models") == 1
    assert all("grammar" in r["body"] for r in ulm.requests)


def test_a_server_that_refuses_the_grammar_is_asked_plainly_and_grammar_on_keeps_its_refusal(
        ulm: ScriptedServer, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ulm.enqueue(Reply(status=400, error="unsupported field: grammar"), Reply(["plain answer"]))
    result = invoke(ulm, monkeypatch, "q")
    assert result.exit_code == 0 and result.stdout == "plain answer\n"
    assert "the server refused the grammar request" in result.stderr and "asking plainly" in result.stderr
    assert "grammar" in ulm.requests[0]["body"] and "grammar" not in ulm.requests[1]["body"]
    ulm.enqueue(Reply(status=400, error="unsupported field: grammar"))
    strict = invoke(ulm, monkeypatch, "q", CB_GRAMMAR="on")
    assert strict.exit_code == 1 and "unsupported field: grammar" in strict.stderr and len(ulm.requests) == 3


@pytest.mark.parametrize(("owned_by", "props", "tools"), [
    ("openai", None, True),
    ("llamacpp", {"chat_template_caps": {"supports_tool_calls": True}}, True),
    ("llamacpp", {"chat_template_caps": {"supports_tool_calls": False}}, False),
    ("ulm", {"grammar": False}, False),  # ulm serve is asked plainly: the blocks are the format it is tuned for
])
def test_tool_calls_are_offered_where_the_server_takes_them(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                            owned_by: str, props: dict[str, Any] | None,
                                                            tools: bool) -> None:
    for server in serve(owned_by, props):
        assert invoke(server, monkeypatch, "q").exit_code == 0
        body = server.requests[0]["body"]
        assert ("tools" in body) is tools and "grammar" not in body
        system = body["messages"][0]["content"]
        assert (TOOL_CALL_INSTRUCTIONS in system) is tools and (INSTRUCTIONS in system) is not tools
        if tools:
            assert body["tools"] == tool_schemas() and body["tool_choice"] == "auto"


def test_streamed_tool_calls_become_the_edits_and_the_answers_blocks(project: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    version = file_version((project / "app.py").read_bytes())
    args = {"path": "app.py", "version": version, "old": "    return 3.14 * r * r\n",
            "new": "    return math.pi * r * r\n"}
    for server in serve("openai"):
        server.enqueue(Reply(["Using pi."], tool_calls=[
            {"name": "search_replace_edit", "arguments": json.dumps(args)},
            {"name": "run", "arguments": json.dumps({"command": "python -m pytest -q"})}]))
        result = invoke(server, monkeypatch, "use pi", "--yes", "--json")
        assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (project / "app.py").read_text() == PI and data["applied"] is True and data["edit_mode"] == "tools"
    assert data["answer"].startswith("Using pi.\n\n<replace path=\"app.py\"") and "<run>python -m pytest -q</run>" \
        in data["answer"]
    assert session.current(project).messages()[-1]["content"] == data["answer"]


def test_a_tool_call_that_cannot_be_read_goes_back_to_the_model(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = file_version((project / "app.py").read_bytes())
    args = {"path": "app.py", "version": version, "old": "    return 3.14 * r * r\n"}
    for server in serve("openai"):
        server.enqueue(Reply([], tool_calls=[{"name": "search_replace_edit", "arguments": json.dumps(args)[:-1]}]),
                       Reply([], tool_calls=[{"name": "search_replace_edit", "arguments": json.dumps(
                           {**args, "new": "    return math.pi * r * r\n"})}]))
        result = invoke(server, monkeypatch, "use pi", "--yes", "--json")
        assert result.exit_code == 0, result.output
        note = server.requests[1]["body"]["messages"][-1]["content"]
    assert (project / "app.py").read_text() == PI
    [repair] = json.loads(result.stdout)["repairs"]
    [error] = repair["errors"]
    assert error.startswith("the tool call search_replace_edit has arguments that are not valid JSON (")
    assert "[the tool call search_replace_edit could not be read: has arguments that are not valid JSON" \
        in repair["answer"]
    assert "not valid JSON" in note and "Call the edit tools again" in note


def test_the_backend_assembles_tool_call_deltas_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [{"name": "create_file", "arguments": '{"path": "a.txt", "content": "x\\n"}'},
             {"name": "run", "arguments": '{"command": "ls"}'}]
    for server in serve():
        server.enqueue(Reply([], tool_calls=calls))
        with Backend(server.base_url) as backend:
            events = list(backend.chat([{"role": "user", "content": "q"}], max_tokens=8, temperature=0))
    done = events[-1]
    assert isinstance(done, Done) and len(events) == 1 and done.ttft_s is not None
    assert done.tool_calls == [{"id": f"call_{i}", "type": "function", "function": c} for i, c in enumerate(calls)]


def test_an_answer_whose_edits_fail_goes_back_once_with_the_errors_and_the_second_answer_is_used(
        ulm: ScriptedServer, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "Here:\n" + replace_block(project, "    return 3.15 * r * r\n", "    return math.pi * r * r\n")
    right = replace_block(project, "    return 3.14 * r * r\n", "    return math.pi * r * r\n")
    ulm.enqueue(Reply([wrong]), Reply([right]))
    result = invoke(ulm, monkeypatch, "use pi", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert (project / "app.py").read_text() == PI
    data = json.loads(result.stdout)
    assert data["answer"] == right and data["applied"] is True
    [repair] = data["repairs"]
    assert repair["answer"] == wrong
    assert repair["errors"] == ["app.py: the <old> line '    return 3.15 * r * r' is not in the file; closest: line 2 "
                                "'    return 3.14 * r * r'. Copy lines exactly as the file shows them"]
    first, second = (r["body"] for r in ulm.requests)
    assert second["messages"][:-2] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": wrong}
    note = second["messages"][-1]
    assert note["role"] == "user" and repair["errors"][0] in note["content"]
    assert "grammar" in second and second["max_tokens"] <= first["max_tokens"]
    assert session.current(project).messages()[-2:] == [{"role": "user", "content": "use pi"},
                                                        {"role": "assistant", "content": right}]


def test_a_terminal_shows_the_repair_between_the_answers(ulm: ScriptedServer, project: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ulm.enqueue(Reply([replace_block(project, "nope\n", "x\n")]), Reply(["I cannot find it."]))
    result = invoke(ulm, monkeypatch, "use pi")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("I cannot find it.\n")
    assert "the edits above cannot be applied: app.py: the <old> line 'nope' is not in the file" in result.stderr
    assert "asking the model to correct them" in result.stderr


def test_no_repair_with_edit_retries_0_nor_for_an_answer_without_edits(ulm: ScriptedServer, project: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ulm.enqueue(Reply([replace_block(project, "nope\n", "x\n")]))
    result = invoke(ulm, monkeypatch, "use pi", "-y", CB_EDIT_RETRIES="0")
    assert result.exit_code == 4 and len(ulm.requests) == 1
    ulm.enqueue(Reply(["Just prose."]))
    assert invoke(ulm, monkeypatch, "explain").exit_code == 0 and len(ulm.requests) == 2


@pytest.mark.parametrize("setting", ["auto", "off"])
def test_an_edit_request_opens_with_a_block_and_an_answer_without_one_goes_back(
        ulm: ScriptedServer, project: Path, monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    right = replace_block(project, "    return 3.14 * r * r\n", "    return math.pi * r * r\n")
    ulm.enqueue(Reply(["```python\nreturn math.pi * r * r\n```"]), Reply([right]))
    files = [OpenFile.from_bytes("app.py", (project / "app.py").read_bytes())]
    result = invoke(ulm, monkeypatch, "use pi", "--edit", "--yes", "--json", CB_GRAMMAR=setting)
    assert result.exit_code == 0, result.output
    assert (project / "app.py").read_text() == PI
    [repair] = json.loads(result.stdout)["repairs"]
    assert repair["errors"] == [exchange.NO_EDIT]
    first, second = (r["body"] for r in ulm.requests)
    assert f"because:\n- {exchange.NO_EDIT}\n" in second["messages"][-1]["content"]
    if setting == "auto":
        assert first["grammar"] == second["grammar"] == edit_grammar(files, edit=True) != edit_grammar(files)
    else:
        assert "grammar" not in first and "grammar" not in second


def test_a_malformed_block_is_repaired_too_and_a_second_failure_is_reported(ulm: ScriptedServer, project: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cut = replace_block(project, "    return 3.14 * r * r\n", "x\n")[:60]  # cut at max_tokens
    ulm.enqueue(Reply([cut]), Reply([cut]))
    result = invoke(ulm, monkeypatch, "use pi", "-y", "--json")
    assert result.exit_code == 4 and len(ulm.requests) == 2
    data = json.loads(result.stdout)
    assert data["answer"] == cut and "is not closed" in data["repairs"][0]["errors"][0]
    assert any("is not closed" in e for e in data["errors"])


def test_a_repair_that_would_not_fit_the_context_is_not_sent(project: Path) -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    count = len
    assert exchange.follow_up(messages, 1000, 500, 4096, "a" * 100, ["e"], "plain", count) is not None
    assert exchange.follow_up(messages, 3900, 500, 4096, "a" * 100, ["e"], "plain", count) is None
    follow = exchange.follow_up(messages, 3000, 1000, 4096, "a" * 100, ["e"], "plain", count)
    assert follow is not None and follow[1] < 1000 and follow[0][:2] == messages


def test_cb_writes_the_grammar_without_importing_llguidance_or_torch(ulm: ScriptedServer, project: Path) -> None:
    code = ("import sys, runpy\nsys.argv = ['cb', 'hi', '--fresh']\n"
            "try:\n    runpy.run_module('cb', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('MODULES ' + ' '.join(sys.modules))\n")
    env = {**os.environ, "CB_BASE_URL": ulm.base_url, "PYTHONPATH": str(ROOT)}
    assert CliRunner(env=env).invoke(app, ["open", "app.py"]).exit_code == 0
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project, env=env,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.stdout == "ok\n", out.stderr
    assert "grammar" in ulm.requests[0]["body"]
    mods = set(out.stderr.split("MODULES ")[-1].split())
    assert "cb.grammar" in mods and not {"llguidance", "torch", "transformers"} & mods
