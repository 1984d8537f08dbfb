"""Daemon start-up and shutdown against real daemons: private runtime dir (D1), lock and stale socket (D3),
SIGTERM with live tabs (D15), on-demand start by the client, long socket paths, the versioned hello."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentshell import protocol as p
from agentshell.client import Client
from cb import paths
from tests.agentshell.conftest import RunningDaemon, tab_processes, wait_until

pytestmark = pytest.mark.integration


def serve_once(*extra: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentshell", "serve", *extra], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ), check=False)


def test_runtime_dir_is_private_and_socket_is_owner_only(daemon: RunningDaemon) -> None:
    run_dir = paths.runtime_dir()
    st = run_dir.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    sock = paths.agentshell_socket().stat()
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o707])
def test_daemon_refuses_a_runtime_dir_others_can_use(mode: int) -> None:
    run_dir = paths.runtime_dir()
    run_dir.mkdir(parents=True)
    run_dir.chmod(mode)
    done = serve_once()
    assert done.returncode != 0
    assert str(run_dir) in done.stderr and "refusing to start" in done.stderr
    assert not paths.agentshell_socket().exists()


def test_daemon_refuses_a_runtime_dir_owned_by_another_user() -> None:
    run_dir = paths.runtime_dir()
    run_dir.mkdir(parents=True, mode=0o700)
    os.chown(run_dir, 65534, 65534)
    done = serve_once()
    assert done.returncode != 0 and "owned by uid 65534" in done.stderr


def test_second_daemon_refuses_and_leaves_the_live_socket_alone(daemon: RunningDaemon) -> None:
    inode = paths.agentshell_socket().stat().st_ino
    done = serve_once()
    assert done.returncode == 1 and "already running" in done.stderr
    assert paths.agentshell_socket().stat().st_ino == inode
    with daemon.client() as c:
        assert c.ping()["pid"] == daemon.pid


def test_restart_after_kill_9_removes_the_stale_socket_and_serves(start_daemon) -> None:
    first = start_daemon()
    first.crash()
    assert paths.agentshell_socket().exists()  # left behind by the crash
    second = start_daemon()
    with second.client() as c:
        assert c.ping()["pid"] == second.pid
    assert "removing stale socket" in second.log()


def test_sigterm_ends_live_tabs_saves_state_and_removes_the_socket(start_daemon, cb_home: Path) -> None:
    d = start_daemon()
    with d.client() as c:
        for _ in range(3):
            c.new(["sh", "-c", "trap '' HUP TERM; sleep 1000"])
        wait_until(lambda: len(tab_processes(cb_home)) >= 3)
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 5
    assert not tab_processes(cb_home)
    assert not paths.agentshell_socket().exists()
    import json

    saved = json.loads((paths.agentshell_state_dir() / "state.json").read_text())
    assert [t["status"] for t in saved["tabs"]] == ["killed"] * 3


def test_client_starts_a_background_daemon_on_demand_with_a_log_file(cb_home: Path) -> None:
    with Client.connect(timeout=10) as c:
        pid = c.ping()["pid"]
        tab = c.new(["true"])
        c.wait(tab.id, exit=True, timeout=10)
    assert (paths.agentshell_state_dir() / "daemon.log").read_text().count("listening on") == 1
    try:
        os.kill(pid, 0)  # it outlives the client
        with Client.connect(autostart=False) as c:
            assert c.ping()["pid"] == pid
            c.shutdown()
        wait_until(lambda: not _alive(pid), timeout=10)
    finally:
        if _alive(pid):
            os.kill(pid, 9)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_client_without_autostart_reports_the_daemon_unavailable() -> None:
    with pytest.raises(p.DaemonUnavailable, match="not running"):
        Client.connect(autostart=False)


def test_socket_path_longer_than_sun_path_still_works(monkeypatch: pytest.MonkeyPatch, cb_home: Path,
                                                       start_daemon) -> None:
    deep = cb_home / ("d" * 60) / ("e" * 60)
    monkeypatch.setenv("CB_HOME", str(deep))
    assert len(str(paths.agentshell_socket())) > 107
    d = RunningDaemon(deep)
    try:
        with d.client() as c:
            assert c.ping()["pid"] == d.pid
    finally:
        assert d.stop() == 0


def test_hello_with_another_protocol_version_is_refused(daemon: RunningDaemon) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(paths.agentshell_socket()))
        s.sendall(p.encode_frame(p.request_frame(1, p.Hello(version=99))))
        answer = _read_frame(s)
    assert answer["ok"] is False and answer["error"]["code"] == "version"


def test_requests_before_hello_are_refused(daemon: RunningDaemon) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(paths.agentshell_socket()))
        s.sendall(p.encode_frame(p.request_frame(1, p.NewTab(argv=["touch", "/tmp/never"]))))
        answer = _read_frame(s)
    assert answer["error"]["code"] == "version"


def _read_frame(s: socket.socket) -> dict:
    s.settimeout(10)
    header = s.recv(4, socket.MSG_WAITALL)
    return p.decode_body(s.recv(p.frame_length(header, p.MAX_RESPONSE_FRAME), socket.MSG_WAITALL))


def test_on_demand_start_in_an_unsafe_dir_fails_with_the_reason() -> None:
    run_dir = paths.runtime_dir()
    run_dir.mkdir(parents=True, mode=0o755)
    run_dir.chmod(0o755)
    with pytest.raises(p.DaemonUnavailable) as err:
        Client.connect(timeout=10)
    assert str(err.value) == (f"could not start agentshell: refusing to start: {run_dir} is accessible to other "
                              f"users (mode 755); run: chmod 700 {run_dir}")
