"""The small commands: status with nothing running, models, server logs/stop without a server, and a
one-shot answer interrupted with Ctrl-C in a real PTY (exit 130, nothing recorded).

Run: .venv/bin/python -m pytest tests/cb/test_commands.py -q
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest
from typer.testing import CliRunner

from cb import config, session
from cb.cli import app
from tests.cb.scripted_server import Reply, ScriptedServer

CB = str(Path(sys.executable).parent / "cb")


def test_status_with_nothing_running_starts_nothing(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CB_REDIS_URL", raising=False)
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model_server"] == {"up": False, "where": "local ulm serve (starts on first use)",
                                      "model": config.DEFAULT_MODEL, "managed": True}
    assert report["agentshell"]["up"] is False and report["redis"]["up"] is False
    text = CliRunner().invoke(app, ["status"]).stdout
    assert text.splitlines()[0].split()[:2] == ["model_server", "down"]


def test_status_and_models_with_a_base_url(scripted: ScriptedServer, project: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_BASE_URL", scripted.base_url)
    report = json.loads(CliRunner().invoke(app, ["status", "--json"]).stdout)
    assert report["model_server"]["up"] is True and report["model_server"]["where"] == scripted.base_url
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and result.stdout == "  scripted  (context 4096)\n"


def test_server_logs_and_stop_without_a_server(project: Path) -> None:
    runner = CliRunner()
    logs = runner.invoke(app, ["server", "logs"])
    assert logs.exit_code == 1 and "no server log yet" in logs.stderr
    assert runner.invoke(app, ["server", "stop"]).stdout == "no model server running\n"


@pytest.mark.integration
def test_ctrl_c_during_a_one_shot_answer_exits_130(scripted: ScriptedServer, project: Path) -> None:
    scripted.enqueue(Reply([f"w{i} " for i in range(500)], delay=0.02))
    env = {**os.environ, "CB_BASE_URL": scripted.base_url, "TERM": "xterm-256color"}
    child = pexpect.spawn(CB, ["long answer please"], env=env, cwd=str(project), timeout=30)
    child.expect(b"w5 ")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert session.current(project).messages() == []
