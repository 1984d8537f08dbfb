"""Saved state: atomic saves, and the checked-in version-1 state file still loads (backward compatibility)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from agentshell import protocol as p
from agentshell.daemon import state
from cb import paths
from tests.agentshell.conftest import RunningDaemon

DATA = Path(__file__).parent / "data"


def test_save_replaces_the_file_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    record = state.TabRecord(id=1, name="a", argv=["x"], cwd="/", token="t", created=1.0)
    state.save(target, state.SavedState(2, [record]))
    assert json.loads(target.read_text())["tabs"][0]["name"] == "a"
    assert [f.name for f in tmp_path.iterdir()] == ["state.json"]
    loaded, problem = state.load(target)
    assert problem is None and loaded.tabs == [record] and loaded.next_id == 2


def test_an_unreadable_state_file_is_set_aside_not_fatal(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"tabs": [{"id": ')
    loaded, problem = state.load(target)
    assert loaded.tabs == [] and "unreadable" in problem
    assert (tmp_path / "state.json.bad").exists()


def test_version_1_state_loads_with_running_tabs_lost(tmp_path: Path) -> None:
    loaded, problem = state.load(DATA / "state_v1.json")
    assert problem is None and loaded.next_id == 4
    assert [state.mark_lost(t) for t in loaded.tabs] == [True, False, False]
    assert [t.status for t in loaded.tabs] == [p.LOST, p.EXITED, p.KILLED]
    assert loaded.tabs[0].seen == {"cb": 4000} and loaded.tabs[1].exit_code == 2


@pytest.mark.integration
def test_daemon_starts_from_a_version_1_state_file(cb_home: Path) -> None:
    paths.ensure_private_dir(paths.agentshell_state_dir())
    shutil.copy(DATA / "state_v1.json", paths.agentshell_state_dir() / "state.json")
    d = RunningDaemon(cb_home)
    try:
        with d.client() as c:
            tabs = c.ls()
            assert [(t.id, t.name, t.status) for t in tabs] == [(1, "web", "lost"), (2, "", "exited"),
                                                                  (3, "old", "killed")]
            assert c.new(["true"]).id == 4  # ids continue, never reused
    finally:
        assert d.stop() == 0
    assert os.stat(paths.agentshell_state_dir() / "state.json").st_mode & 0o077 == 0
