"""D18: a stateful model test. Hypothesis drives a real daemon through random sequences of spawns, input,
reads, resizes, kills, removals, client churn and kill -9 + restart, checking the invariants after every step:
no zombies, every listed tab is running with a live process group or is exited/killed/lost, rings stay
under their cap, descriptors stay bounded, and the daemon's tab list matches the model."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agentshell import protocol as p
from agentshell.client import Client
from tests.agentshell.conftest import RunningDaemon, tab_processes, wait_until

RING_CAP = 64 << 10
COMMANDS = {
    "sleeper": ["sleep", "1000"],
    "echo": ["sh", "-c", "stty -echo; exec cat"],
    "brief": ["sh", "-c", "echo brief; exit 2"],
    "chatty": ["sh", "-c", "seq 1 20000"],
}


class DaemonModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="ash-model-"))
        self.old_home = os.environ.get("CB_HOME")
        os.environ["CB_HOME"] = str(self.home)
        self.daemon = RunningDaemon(self.home, "--ring-bytes", str(RING_CAP))
        self.client = self.daemon.client()
        self.extra_clients: list[Client] = []
        self.tabs: dict[int, str] = {}  # id -> kind, as the model knows them
        self.fds_baseline = psutil.Process(self.daemon.pid).num_fds()

    @rule(kind=st.sampled_from(sorted(COMMANDS)))
    def spawn(self, kind: str) -> None:
        tab = self.client.new(COMMANDS[kind], cols=80, rows=24)
        self.tabs[tab.id] = kind

    @precondition(lambda self: self.tabs)
    @rule(data=st.data(), text=st.text(max_size=40))
    def write(self, data: st.DataObject, text: str) -> None:
        tab_id = data.draw(st.sampled_from(sorted(self.tabs)))
        try:
            self.client.send(tab_id, text, ["Enter"])
        except p.TabNotRunning:
            assert self.client.info(tab_id).status != p.RUNNING or self.tabs[tab_id] == "brief"

    @precondition(lambda self: self.tabs)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        tab_id = data.draw(st.sampled_from(sorted(self.tabs)))
        out = self.client.read(tab_id, since=0)
        assert len(out.data) <= RING_CAP and out.start == out.dropped
        self.client.tail(tab_id, 10, reader="model")

    @precondition(lambda self: self.tabs)
    @rule(data=st.data(), cols=st.integers(2, 300), rows=st.integers(2, 100))
    def resize(self, data: st.DataObject, cols: int, rows: int) -> None:
        tab_id = data.draw(st.sampled_from(sorted(self.tabs)))
        assert (self.client.resize(tab_id, cols, rows).cols, self.client.info(tab_id).rows) == (cols, rows)

    @precondition(lambda self: self.tabs)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        tab_id = data.draw(st.sampled_from(sorted(self.tabs)))
        assert self.client.kill(tab_id).status != p.RUNNING

    @precondition(lambda self: self.tabs)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        tab_id = data.draw(st.sampled_from(sorted(self.tabs)))
        self.client.rm(tab_id, force=True)
        del self.tabs[tab_id]

    @rule()
    def client_connects(self) -> None:
        self.extra_clients.append(self.daemon.client())

    @precondition(lambda self: self.extra_clients)
    @rule()
    def client_disconnects(self) -> None:
        self.extra_clients.pop().close()

    @rule()
    def crash_and_restart(self) -> None:
        self.close_clients()
        self.daemon.crash()
        self.daemon = RunningDaemon(self.home, "--ring-bytes", str(RING_CAP))
        self.client = self.daemon.client()
        self.fds_baseline = psutil.Process(self.daemon.pid).num_fds()
        for tab in self.client.ls():
            assert tab.status != p.RUNNING  # nothing re-run after a crash
        wait_until(lambda: not tab_processes(self.home), timeout=5)

    @invariant()
    def listed_tabs_match_the_model_and_are_consistent(self) -> None:
        tabs = self.client.ls()
        assert sorted(t.id for t in tabs) == sorted(self.tabs)
        for t in tabs:
            assert t.status in p.STATUSES and t.kept_bytes <= RING_CAP
            if t.status == p.RUNNING and t.pid is not None:
                try:
                    os.killpg(t.pid, 0)
                except ProcessLookupError:  # it may have just exited: then the daemon says so shortly
                    wait_until(lambda t=t: self.client.info(t.id).status != p.RUNNING, timeout=3)

    @invariant()
    def no_zombies_and_bounded_descriptors(self) -> None:
        proc = psutil.Process(self.daemon.pid)

        def no_zombies() -> bool:
            return not [k for k in proc.children(recursive=True) if k.status() == psutil.STATUS_ZOMBIE]

        wait_until(no_zombies, timeout=2)
        running = sum(t.status == p.RUNNING for t in self.client.ls())
        assert proc.num_fds() <= self.fds_baseline + 4 * running + len(self.extra_clients) + 8

    def close_clients(self) -> None:
        for c in self.extra_clients:
            c.close()
        self.extra_clients.clear()
        self.client.close()

    def teardown(self) -> None:
        self.close_clients()
        self.daemon.stop()
        leftovers = tab_processes(self.home)
        for proc in leftovers:
            proc.kill()
        if self.old_home is not None:
            os.environ["CB_HOME"] = self.old_home
        shutil.rmtree(self.home, ignore_errors=True)
        assert not leftovers


# No shrinking: every step restarts nothing cheap, and a failure already prints its whole step list.
DaemonModel.TestCase.settings = settings(max_examples=3, stateful_step_count=12, deadline=None,
                                         phases=(Phase.explicit, Phase.reuse, Phase.generate),
                                         suppress_health_check=list(HealthCheck))
test_daemon_model = pytest.mark.slow(pytest.mark.integration(DaemonModel.TestCase))
