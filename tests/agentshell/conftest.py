"""A real agentshell daemon per test, in the test's own CB_HOME (so its socket, state and logs are private).

`daemon` starts `python -m agentshell serve` (foreground, stop timeout 1 s) and waits until it answers;
at teardown it is stopped with SIGTERM, and any process still carrying this test's tab marker is killed
(and the test fails if there was one, unless the test killed the daemon on purpose).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agentshell.client import Client
from cb import paths
from tests.support.processes import stop_process


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01) -> object:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def tab_processes(home: Path) -> list[psutil.Process]:
    """Live processes started by a tab of the daemon under `home` (they carry the tab marker and CB_HOME)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
            if "AGENTSHELL_TAB_TOKEN" in env and env.get("CB_HOME") == str(home) \
                    and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


class RunningDaemon:
    def __init__(self, home: Path, *extra: str, preexec: Callable[[], None] | None = None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.log_path = home / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentshell.daemon", "--stop-timeout", "1", *extra],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=preexec,
            env={**os.environ, "CB_HOME": str(home)})
        wait_until(self._answers, timeout=20)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.log()}")
        try:
            Client.connect(autostart=False, timeout=5).close()
            return True
        except Exception:
            return False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self) -> Client:
        return Client.connect(autostart=False, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        code = stop_process(self.proc, timeout)
        self._log.close()
        return code

    def crash(self) -> None:
        """kill -9, as a crash would."""
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def start_daemon(cb_home: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """Start daemons in this test's CB_HOME; all are stopped and their tabs' processes checked at the end."""
    started: list[RunningDaemon] = []

    def start(*extra: str, preexec: Callable[[], None] | None = None) -> RunningDaemon:
        d = RunningDaemon(cb_home, *extra, preexec=preexec)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
    leftovers = tab_processes(cb_home)
    for proc in leftovers:
        proc.kill()
    assert not leftovers, f"tab processes outlived the daemon: {leftovers}"


@pytest.fixture
def daemon(start_daemon: Callable[..., RunningDaemon]) -> RunningDaemon:
    return start_daemon()


@pytest.fixture
def client(daemon: RunningDaemon) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


@pytest.fixture
def socket_path() -> Path:
    return paths.agentshell_socket()
