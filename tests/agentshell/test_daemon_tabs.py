"""Tabs through a real daemon: lifecycle, exit codes, input, output, waits, signals, group kill (D5),
EOF as exit (D14), exact bytes (D9), oversized escape strings (D8), injected paste markers (D17), logs."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from agentshell import protocol as p
from agentshell.client import Client
from tests.agentshell.conftest import RunningDaemon, tab_processes, wait_until

pytestmark = pytest.mark.integration


def test_new_ls_rename_rm_and_names(client: Client) -> None:
    a = client.new(["sleep", "100"], name="web")
    b = client.new(["true"])
    assert [t.id for t in client.ls()] == [a.id, b.id]
    assert client.info("web").id == a.id and client.info(str(b.id)).id == b.id
    with pytest.raises(p.AgentshellError, match="already named") as err:
        client.new(["true"], name="web")
    assert err.value.code == p.ErrorCode.NAME_TAKEN
    with pytest.raises(p.BadRequest, match="not only digits"):
        client.rename(b.id, "42")
    assert client.rename(b.id, "tests").name == "tests"
    with pytest.raises(p.TabStillRunning):
        client.rm("web")
    client.rm("web", force=True)
    with pytest.raises(p.NoSuchTab):
        client.info("web")
    assert [t.name for t in client.ls()] == ["tests"]


def test_exit_codes_and_signals_are_kept(client: Client) -> None:
    three = client.new(["sh", "-c", "exit 3"])
    assert client.wait(three.id, exit=True, timeout=10).tab.exit_code == 3
    sleeper = client.new(["sleep", "100"])
    client.signal(sleeper.id, "INT")
    ended = client.wait(sleeper.id, exit=True, timeout=10).tab
    assert ended.status == p.EXITED and ended.exit_signal == signal.SIGINT and ended.exit_code is None
    with pytest.raises(p.TabNotRunning):
        client.signal(sleeper.id, "TERM")
    with pytest.raises(p.BadRequest, match="unknown signal"):
        client.signal(three.id, "SIGNOPE")


def test_spawn_errors_are_reported_not_run(client: Client, tmp_path: Path) -> None:
    with pytest.raises(p.SpawnFailed, match="command not found"):
        client.new(["no-such-program-anywhere"])
    with pytest.raises(p.SpawnFailed, match="no such directory"):
        client.new(["true"], cwd=tmp_path / "missing")
    assert client.ls() == []


def test_send_text_and_keys_then_read_since_offsets(client: Client) -> None:
    tab = client.new(["sh", "-c", "stty -echo; exec cat"])
    client.wait(tab.id, idle=0.2, timeout=10)
    start = client.info(tab.id).end_offset
    client.send(tab.id, "hello", ["Enter"])
    client.wait(tab.id, pattern="hello", since=start, timeout=10)
    out = client.read(tab.id, since=start)
    assert out.data == b"hello\r\n" and out.start == start and out.end == start + 7
    client.send(tab.id, "", ["C-d"])
    assert client.wait(tab.id, exit=True, timeout=10).tab.exit_code == 0


def test_tail_marks_what_is_new_since_the_readers_last_look(client: Client) -> None:
    tab = client.new(["sh", "-c", "stty -echo; exec cat"], cols=40, rows=10)
    client.wait(tab.id, idle=0.2, timeout=10)
    client.send(tab.id, "first", ["Enter"])
    client.wait(tab.id, pattern="^first", timeout=10)
    first = client.tail(tab.id, 10, reader="cb")
    assert p.NEW_MARKER not in first.text and first.lines[-1] == "first"
    client.send(tab.id, "second", ["Enter"])
    client.wait(tab.id, pattern="^second", timeout=10)
    second = client.tail(tab.id, 10, reader="cb")
    assert second.text.splitlines()[-2:] == [p.NEW_MARKER, "second"]
    assert second.lines[second.new_from] == "second" and second.new_bytes == len("second\r\n")
    again = client.tail(tab.id, 10, reader="cb")
    assert again.new_from is None and p.NEW_MARKER not in again.text
    other = client.tail(tab.id, 10, reader="someone-else", mark_seen=False)
    assert other.new_from is None  # a reader that never looked gets no marker


def test_screen_and_resize(client: Client) -> None:
    tab = client.new(["sh", "-c", "stty size; read x; stty size; sleep 100"], cols=50, rows=12)
    client.wait(tab.id, pattern="12 50", timeout=10)
    client.resize(tab.id, 70, 20)
    client.send(tab.id, "", ["Enter"])
    client.wait(tab.id, pattern="20 70", timeout=10)
    screen = client.screen(tab.id)
    assert len(screen) == 20 and screen[0] == "12 50" and "20 70" in screen


def test_wait_for_idle_and_timeout(client: Client) -> None:
    tab = client.new(["sh", "-c", "echo start; sleep 0.3; echo later; sleep 100"])
    t0 = time.monotonic()
    result = client.wait(tab.id, idle=1.0, timeout=10)
    assert result.reason == "idle" and time.monotonic() - t0 >= 1.0
    assert "later" in client.tail(tab.id).text
    with pytest.raises(p.WaitTimeout):
        client.wait(tab.id, pattern="never printed", timeout=0.3)
    with pytest.raises(p.BadRequest, match="bad pattern"):
        client.wait(tab.id, pattern="(", timeout=1)


def test_closing_a_tab_kills_children_that_ignore_term_and_hup(client: Client, cb_home: Path) -> None:
    """D5: the whole group gets TERM then KILL after the stop timeout (1 s in these tests)."""
    tab = client.new(["sh", "-c", 'trap "" TERM HUP; sleep 1000 & sleep 1000'])
    wait_until(lambda: len(tab_processes(cb_home)) >= 3)
    t0 = time.monotonic()
    ended = client.kill(tab.id)
    assert time.monotonic() - t0 < 1 + 1.5
    assert ended.status == p.KILLED and ended.exit_signal == signal.SIGKILL
    assert not tab_processes(cb_home)


def test_kill_also_ends_processes_that_left_the_group(client: Client, cb_home: Path) -> None:
    tab = client.new(["sh", "-c", "setsid sleep 1000 & sleep 1000"])
    wait_until(lambda: len(tab_processes(cb_home)) >= 3)
    client.kill(tab.id)
    assert not tab_processes(cb_home)


def test_kill_of_an_ended_tab_ends_what_it_left_running(client: Client, cb_home: Path) -> None:
    tab = client.new(["sh", "-c", "trap '' HUP; sleep 1000 & exit 0"])
    assert client.wait(tab.id, exit=True, timeout=10).tab.exit_code == 0
    assert len(tab_processes(cb_home)) == 1  # the sleep, which ignored the hangup
    assert client.kill(tab.id).status == p.EXITED  # it had ended on its own
    assert not tab_processes(cb_home)


def test_child_exit_is_eof_with_last_output_kept_and_no_busy_loop(daemon: RunningDaemon, client: Client) -> None:
    """D14."""
    tab = client.new(["sh", "-c", "printf 'last words'; exit 5"])
    ended = client.wait(tab.id, exit=True, timeout=10).tab
    assert ended.exit_code == 5 and ended.status == p.EXITED
    assert client.read(tab.id).data == b"last words"
    proc = psutil.Process(daemon.pid)
    proc.cpu_percent(None)
    time.sleep(0.5)
    assert proc.cpu_percent(None) < 20


def test_output_bytes_are_stored_exactly_even_when_invalid_utf8(client: Client) -> None:
    """D9: invalid bytes, a 4-byte char; the tab's tty is raw so no newline translation happens."""
    payload = b"\xff\xfe ok \xf0\x9f\x98\x80 \xed\xa0\x80 end"
    tab = client.new(["sh", "-c", "stty raw -echo; printf '" + "".join(f"\\{b:03o}" for b in payload) + "'"])
    client.wait(tab.id, exit=True, timeout=10)
    assert client.read(tab.id).data == payload
    assert "ok 😀" in client.tail(tab.id).text


def test_oversized_unterminated_osc_is_dropped_and_output_after_it_kept(daemon: RunningDaemon,
                                                                        client: Client) -> None:
    """D8."""
    rss_before = psutil.Process(daemon.pid).memory_info().rss
    script = "import sys; sys.stdout.write('\\x1b]2;' + 'x' * 1100000 + '\\x1b\\\\OK\\n')"
    tab = client.new([sys.executable, "-c", script])
    client.wait(tab.id, exit=True, timeout=20)
    out = client.read(tab.id).data
    assert out.endswith(b"OK\r\n") and b"xxxx" not in out
    assert client.tail(tab.id).lines[-1] == "OK"
    assert psutil.Process(daemon.pid).memory_info().rss - rss_before < 16 << 20


def test_injected_paste_end_marker_cannot_run_what_follows(client: Client, tmp_path: Path) -> None:
    """D17: bash has bracketed paste on; the payload tries to close the paste and press Enter."""
    canary = tmp_path / "canary"
    canary.mkdir()
    tab = client.new(["bash", "--norc", "--noprofile", "-i"], env={"HOME": str(tmp_path), "PS1": "$ "})
    client.wait(tab.id, pattern=r"\$ $", timeout=10)
    result = client.send(tab.id, f"echo hi\x1b[201~rm -rf {canary}\r\x1b[200~")
    assert result["removed"] > 0
    client.wait(tab.id, idle=0.5, timeout=10)
    assert canary.exists()
    client.send(tab.id, "", ["C-c"])
    client.run_command(tab.id, "echo done-$((6*7))")
    client.wait(tab.id, pattern="done-42", timeout=10)
    assert canary.exists()


def test_logs_rotate_and_keep_the_whole_output(start_daemon) -> None:
    d = start_daemon("--log-bytes", "20000", "--ring-bytes", "30000")
    with d.client() as c:
        tab = c.new(["sh", "-c", "stty raw; seq 1 60000"])
        ended = c.wait(tab.id, exit=True, timeout=20).tab
        files = c.logs(tab.id)
        assert len(files) == 3 and files[-1].name.endswith(".log")
        assert all(f.stat().st_size < 20000 + (64 << 10) for f in files)  # rotated before a write of <= 64 KiB
        kept = b"".join(f.read_bytes() for f in files)
        assert kept.endswith(b"59999\n60000\n")
        assert ended.kept_bytes <= 30000 and ended.dropped_bytes == ended.end_offset - ended.kept_bytes > 0
        out = c.read(tab.id, since=0)
        assert out.dropped == ended.dropped_bytes and out.start == ended.dropped_bytes
        c.rm(tab.id)
        assert not any(f.exists() for f in files)


def test_tab_environment_cwd_and_marker(client: Client, tmp_path: Path) -> None:
    tab = client.new(["sh", "-c", 'pwd; echo "$GREETING $AGENTSHELL_TAB_ID $TERM"'], cwd=tmp_path,
                     env={"GREETING": "hey", "TERM": "dumb"})
    client.wait(tab.id, exit=True, timeout=10)
    assert client.tail(tab.id).lines == [str(tmp_path), f"hey {tab.id} xterm-256color"]


def test_tab_runs_in_its_own_session_with_the_pty_as_controlling_terminal(client: Client) -> None:
    tab = client.new(["sleep", "100"])
    wait_until(lambda: psutil.Process(tab.pid).name() == "sleep")
    assert os.getsid(tab.pid) == tab.pid and os.getpgid(tab.pid) == tab.pid
    tty_nr = int(Path(f"/proc/{tab.pid}/stat").read_text().rsplit(")", 1)[1].split()[4])
    assert 136 <= os.major(tty_nr) <= 143  # a /dev/pts/N terminal controls it
    assert Path(f"/proc/{tab.pid}/stat").read_text().rsplit(")", 1)[1].split()[5] == str(tab.pid)  # foreground
    client.kill(tab.id)


def test_attach_streams_defused_output_then_the_exit(client: Client) -> None:
    tab = client.new(["sh", "-c", "read x; printf 'a\\033]52;c;eA==\\007b\\033[6n\\n'"])
    request_id, _, _ = client.attach(tab.id)
    client.send_request(p.SendInput(str(tab.id), keys=["Enter"]))
    data, ended = b"", None
    while ended is None:
        frame = client.recv_frame(timeout=10)
        if frame.get("id") == request_id and frame.get("event") == "output":
            data += p.unb64(frame["data_b64"])
        elif frame.get("id") == request_id and frame.get("event") == "exit":
            ended = p.TabInfo.from_wire(frame["tab"])
    assert b"ab" in data and b"\x1b]52" not in data and b"\x1b[6n" not in data
    assert ended.status == p.EXITED


def test_attach_to_an_ended_tab_gets_the_exit_at_once(client: Client) -> None:
    tab = client.new(["sh", "-c", "echo bye"])
    client.wait(tab.id, exit=True, timeout=10)
    request_id, redraw, _ = client.attach(tab.id)
    assert b"bye" in redraw
    frame = client.recv_frame(timeout=10)
    assert frame["id"] == request_id and frame["event"] == "exit"
