"""`cb tab ...` mirrors the agentshell verbs against a real daemon, plus `cb tab run CMD`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cb.commands.tab import app as tab_app
from tests.agentshell.conftest import RunningDaemon

pytestmark = pytest.mark.integration
runner = CliRunner()


def tab(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(tab_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_run_starts_a_shell_command_line_in_a_named_tab(daemon: RunningDaemon, tmp_path: Path) -> None:
    code, out, _ = tab("run", "echo $((40+2)) > answer; echo done", "--name", "job", "--cwd", str(tmp_path))
    assert code == 0 and "tab 1:job started" in out
    assert tab("wait", "job", "--exit", "--timeout", "10")[0] == 0
    assert (tmp_path / "answer").read_text() == "42\n"
    assert tab("read", "job", "--tail", "3")[1].strip() == "done"


def test_mirrored_verbs_list_send_read_kill_rm(daemon: RunningDaemon) -> None:
    assert tab("new", "--name", "c", "--", "sh", "-c", "stty -echo; exec cat")[0] == 0
    listed = json.loads(tab("ls", "--json")[1])
    assert [(t["name"], t["status"]) for t in listed] == [("c", "running")]
    assert tab("send", "c", "ping", "--enter")[0] == 0
    assert tab("wait", "c", "--for", "^ping", "--timeout", "10")[0] == 0
    assert tab("kill", "c")[0] == 0
    assert tab("rm", "c")[0] == 0
    assert "no tabs" in tab("ls")[1]


def test_errors_are_one_line(daemon: RunningDaemon) -> None:
    code, _, err = tab("read", "nosuch")
    assert code == 1 and err.strip() == "agentshell: no tab named 'nosuch'"


def test_cb_registers_the_tab_commands() -> None:
    from cb.cli import app

    result = runner.invoke(app, ["tab", "--help"])
    assert result.exit_code == 0
    for verb in ("run", "ls", "new", "send", "read", "wait", "kill", "rm", "attach", "logs"):
        assert verb in result.stdout
