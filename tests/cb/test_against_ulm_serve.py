"""The main paths against the real `ulm serve` on the seeded tiny model: one-shot, --json usage, budgets
measured with the server's tokenizer against its real context (and cut to it on its overflow error), the
REPL in a PTY (prefix reuse shows as cached tokens; Ctrl-C cancels), and the managed background server
(start, reuse, restart on other server_args, status, logs, stop, and a start that fails in one line).

Run: .venv/bin/python -m pytest tests/cb/test_against_ulm_serve.py -q
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cb import paths, server
from cb.cli import app
from tests.cb.test_repl import quit_repl, spawn_repl

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def real(ulm_server: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CB_BASE_URL", ulm_server)
    monkeypatch.setenv("CB_MAX_TOKENS", "12")
    monkeypatch.setenv("CB_TEMPERATURE", "0")
    return CliRunner()


def test_one_shot_json_reports_the_servers_usage(real: CliRunner) -> None:
    assert real.invoke(app, ["open", "app.py"]).exit_code == 0
    result = real.invoke(app, ["what does area do?", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    usage = data["usage"]
    assert data["answer"] and data["edits"] == [] and data["applied"] is False
    assert usage["context_length"] == 2048 and usage["context_cuts"] == []
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["prompt_tokens"] > 400  # system prompt + edit instructions + the file


def test_budget_measured_with_the_real_tokenizer_fits_the_real_context(real: CliRunner, project: Path) -> None:
    (project / "big.py").write_text("".join(f"value_{i} = compute({i}, 'some text')\n" for i in range(3000)))
    real.invoke(app, ["open", "big.py"])
    result = real.invoke(app, ["summarise big.py", "--json"])
    assert result.exit_code == 0, result.output  # no 400 context overflow from the server
    usage = json.loads(result.stdout)["usage"]
    (cut,) = usage["context_cuts"]
    assert re.fullmatch(r"\d+ lines of big\.py not shown", cut)
    assert usage["prompt_tokens"] <= 2048 - 12
    assert usage["prompt_tokens"] > 1024  # the file took the room it was given, not a timid slice


def test_a_configured_context_over_the_servers_is_cut_to_it_on_its_overflow_error(
        real: CliRunner, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_CONTEXT_LENGTH", "8192")  # the server's is 2048: cb learns it from the 400 answer
    (project / "big.py").write_text("".join(f"value_{i} = compute({i}, 'some text')\n" for i in range(3000)))
    real.invoke(app, ["open", "big.py"])
    result = real.invoke(app, ["summarise big.py", "--json"])
    assert result.exit_code == 0, result.output
    usage = json.loads(result.stdout)["usage"]
    assert usage["context_length"] == 2048 and 1024 < usage["prompt_tokens"] <= 2048 - 12
    (cut,) = usage["context_cuts"]
    assert re.fullmatch(r"\d+ lines of big\.py not shown", cut)


def test_repl_against_ulm_serve_reuses_the_prefix_and_cancels(ulm_server: str, project: Path) -> None:
    child = spawn_repl(ulm_server, project, CB_MAX_TOKENS="8", CB_TEMPERATURE="0")
    child.send("hello\r")
    child.expect(r"(\d+) in · \d+ out")
    first_in = int(child.match.group(1))
    child.expect("›")
    child.send("and now?\r")
    child.expect(r"(\d+) in · \d+ out · (\d+) cached")
    assert int(child.match.group(1)) > first_in and int(child.match.group(2)) >= first_in // 2
    child.expect("›")
    child.send("/model\r")
    child.expect("›")
    child.sendline("/session")
    child.expect("4 messages")
    child.expect("›")
    assert quit_repl(child) == 0


def _slots_busy(base_url: str) -> int:
    text = urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=5).read().decode()
    match = re.search(r"^ulm_slots_busy (\d+)", text, re.M)
    return int(match.group(1)) if match else 0


def _wait_busy(base_url: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _slots_busy(base_url):
            return True
        time.sleep(0.02)
    return False


def _wait_idle(base_url: str, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _slots_busy(base_url):
            return True
        time.sleep(0.02)
    return False


def test_ctrl_c_cancels_a_real_stream_and_the_session_goes_on(ulm_server: str, project: Path) -> None:
    child = spawn_repl(ulm_server, project, CB_MAX_TOKENS="64", CB_TEMPERATURE="0")
    child.send("write a long story\r")
    assert _wait_busy(ulm_server), "the server never started generating"
    child.sendintr()
    child.expect(r"answer cancelled|\[cancelled\]")
    child.expect("›")
    assert _wait_idle(ulm_server), "the cancelled request kept its slot"
    child.send("short one\r")
    child.expect(r"\d+ in · \d+ out")
    child.expect("›")
    assert quit_repl(child) == 0


def _wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server._is_our_server(pid):
            return True
        time.sleep(0.05)
    return False


def _says_grammar(base_url: str) -> bool:
    """Whether the ulm serve at `base_url` says in GET /props that it constrains decoding."""
    try:
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/props", timeout=5) as reply:
            return json.load(reply).get("grammar") is True
    except OSError:  # no /props (404): a ulm serve without constrained decoding
        return False


def test_managed_server_starts_once_is_reused_restarts_on_new_server_args_and_stops(tiny_model_2k: Path, project: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_MODEL", str(tiny_model_2k))
    monkeypatch.setenv("CB_MAX_TOKENS", "8")
    runner = CliRunner()
    assert runner.invoke(app, ["models", "alias", "tiny", str(tiny_model_2k)]).exit_code == 0
    try:
        started = runner.invoke(app, ["server", "start", "-m", "tiny"])  # the alias names ulm serve's --model
        assert started.exit_code == 0, started.output
        info = server.read_info()
        assert info is not None and f"pid {info.pid}" in started.stdout and info.model == str(tiny_model_2k)
        again = runner.invoke(app, ["server", "start"])
        assert again.exit_code == 0 and f"pid {info.pid}" in again.stdout
        answer = runner.invoke(app, ["hi"])  # no base_url: the managed server answers
        assert answer.exit_code == 0, answer.output
        served = json.loads((paths.server_dir() / "served.json").read_text())  # its facts, kept per start
        assert served["stamp"] == f"{info.pid}:{info.started}" and served["features"]["server"] == "ulm"
        assert served["features"]["grammar"] is _says_grammar(info.base_url) and served["features"]["tools"] is False
        status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
        assert status["model_server"]["up"] is True and status["model_server"]["pid"] == info.pid
        assert "ulm" in runner.invoke(app, ["server", "logs", "-n", "200"]).stdout
        monkeypatch.setenv("CB_SERVER_ARGS", "--mode exact")  # another identity: the old server makes way
        restarted = runner.invoke(app, ["server", "start"])
        assert restarted.exit_code == 0, restarted.output
        assert _wait_gone(info.pid)
        info = server.read_info()
        assert info is not None and info.server_args == "--mode exact" and f"pid {info.pid}" in restarted.stdout
        assert f"pid {info.pid}" in runner.invoke(app, ["server", "start"]).stdout  # same identity: reused
    finally:
        stopped = runner.invoke(app, ["server", "stop"])
    assert stopped.exit_code == 0 and "stopped the model server" in stopped.stdout
    assert _wait_gone(info.pid)
    assert runner.invoke(app, ["server", "stop"]).stdout.strip() == "no model server running"


def test_a_server_that_cannot_start_is_one_line_with_the_log(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_MODEL", str(project / "no-such-model"))
    result = CliRunner().invoke(app, ["hi"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("cb: the model server")
    assert f"log: {server.log_file()}" in line
    assert server.read_info() is None
