"""The `agentshell` CLI against a real daemon: every verb, --json, exit codes, one-line errors, attach in a
real PTY (detach key, relay defused of clipboard writes and queries)."""

from __future__ import annotations

import json
import os
import sys

import pexpect
import pytest
from typer.testing import CliRunner

from agentshell.cli import app
from agentshell.client import Client
from tests.agentshell.conftest import RunningDaemon

pytestmark = pytest.mark.integration
runner = CliRunner()


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_verbs_end_to_end_with_json(daemon: RunningDaemon) -> None:
    code, out, _ = cli("new", "--name", "echoer", "--json", "--", "sh", "-c", "stty -echo; exec cat")
    assert code == 0
    tab = json.loads(out)
    assert tab["name"] == "echoer" and tab["status"] == "running" and tab["argv"][0] == "sh"
    assert cli("wait", "echoer", "--idle", "0.2", "--timeout", "10")[0] == 0
    assert cli("send", "echoer", "hello there", "--enter")[0] == 0
    code, out, _ = cli("wait", "echoer", "--for", "^hello there", "--timeout", "10", "--json")
    assert code == 0 and json.loads(out)["reason"] == "match"
    assert cli("read", "echoer", "--tail", "5")[1].strip() == "hello there"
    data = json.loads(cli("read", "echoer", "--since", "0", "--json")[1])
    assert data["text"].endswith("hello there\r\n") and data["start"] == 0
    assert "12 33" not in cli("read", "echoer", "--screen")[1]
    assert cli("resize", "echoer", "100", "30")[0] == 0
    listed = json.loads(cli("ls", "--json")[1])
    assert [(t["name"], t["cols"], t["rows"]) for t in listed] == [("echoer", 100, 30)]
    assert cli("rename", "echoer", "cat2")[1].strip() == f"tab {tab['id']} is now cat2"
    assert cli("signal", "cat2", "TERM")[0] == 0
    code, out, _ = cli("wait", "cat2", "--exit", "--timeout", "10")
    assert code == 128 + 15 and "exited SIGTERM" in out
    assert "hello there" in cli("logs", "cat2")[1]
    assert cli("logs", "cat2", "--path")[1].strip().endswith(f"{tab['id']}.log")
    assert cli("rm", "cat2")[0] == 0
    assert "no tabs" in cli("ls")[1]


def test_wait_exit_returns_the_tabs_exit_code_and_timeouts_exit_124(daemon: RunningDaemon) -> None:
    tab = json.loads(cli("new", "--json", "--", "sh", "-c", "sleep 0.2; exit 7")[1])
    assert cli("wait", str(tab["id"]), "--exit", "--timeout", "10")[0] == 7
    code, _, err = cli("wait", str(tab["id"]), "--for", "never", "--timeout", "0.2")
    assert code == 1 and "ended (exited 7) before" in err
    sleeper = json.loads(cli("new", "--json", "--", "sleep", "100")[1])
    code, _, err = cli("wait", str(sleeper["id"]), "--for", "never", "--timeout", "0.2")
    assert code == 124 and err.startswith("agentshell: ") and len(err.strip().splitlines()) == 1
    assert cli("kill", str(sleeper["id"]))[0] == 0


def test_errors_are_one_line_or_a_json_object(daemon: RunningDaemon) -> None:
    code, _, err = cli("read", "99")
    assert code == 1 and err.strip() == "agentshell: no tab 99"
    code, out, _ = cli("kill", "nope", "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == "no_such_tab"
    code, _, err = cli("send", "99", "--keys", "Hyper-Q")
    assert code == 1 and "Traceback" not in err
    code, _, err = cli("new", "--", "definitely-not-a-command")
    assert code == 1 and "command not found" in err


def test_send_removes_control_sequences_and_says_so(daemon: RunningDaemon) -> None:
    cli("new", "--name", "c", "--", "sh", "-c", "stty -echo; exec cat")
    code, out, _ = cli("send", "c", "ok\x1b[201~\x1b]52;c;eA==\x07")
    assert code == 0 and "control characters removed" in out
    cli("kill", "c")


def test_attach_shows_the_tab_types_into_it_and_detaches_with_the_key(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        tab = c.new(["sh", "-c", "stty -echo; printf 'ready\\n'; while read line; do "
                                 "printf '\\033]52;c;cm0gLXJmIH4=\\007\\033[6ngot:%s\\n' \"$line\"; done"])
        c.wait(tab.id, pattern="ready", timeout=10)
    child = pexpect.spawn(sys.executable, ["-m", "agentshell", "attach", str(tab.id)], env=dict(os.environ),
                          dimensions=(24, 80), timeout=15)
    try:
        child.expect("ready")
        child.send("hello\r")
        child.expect("got:hello")
        seen = child.before + child.after
        child.sendcontrol("]")
        child.expect("detached from tab")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert b"\x1b]52" not in seen and b"\x1b[6n" not in seen
    with daemon.client() as c:
        info = c.info(tab.id)
        assert info.status == "running" and (info.cols, info.rows) == (80, 24)
        c.kill(tab.id)


def test_ping_starts_the_daemon_when_none_runs() -> None:
    code, out, _ = cli("ping", "--json")
    assert code == 0
    pid = json.loads(out)["pid"]
    with Client.connect(autostart=False) as c:
        assert c.ping()["pid"] == pid
    assert cli("shutdown")[0] == 0
