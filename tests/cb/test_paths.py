"""cb.paths: every per-user path follows CB_HOME, else XDG, and private dirs are really private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cb import paths


def test_cb_home_moves_every_path_under_it(cb_home: Path) -> None:
    for fn in (paths.config_dir, paths.state_dir, paths.cache_dir, paths.runtime_dir, paths.config_file,
               paths.model_cache_dir, paths.sessions_dir, paths.undo_dir, paths.history_file,
               paths.server_dir, paths.agentshell_socket, paths.agentshell_lock, paths.agentshell_state_dir):
        assert fn().is_relative_to(cb_home), fn.__name__


def test_xdg_dirs_used_without_cb_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CB_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "s"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "k"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "r"))
    assert paths.config_dir() == tmp_path / "c" / "cb"
    assert paths.state_dir() == tmp_path / "s" / "cb"
    assert paths.cache_dir() == tmp_path / "k" / "cb"
    assert paths.runtime_dir() == tmp_path / "r" / "cb"


def test_relative_xdg_values_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CB_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    assert paths.config_dir() == Path.home() / ".config" / "cb"


def test_runtime_dir_falls_back_to_a_per_uid_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CB_HOME")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert paths.runtime_dir().name == f"cb-{os.getuid()}"


def test_ensure_private_dir_creates_0700(tmp_path: Path) -> None:
    target = paths.ensure_private_dir(tmp_path / "a" / "run")
    assert target.stat().st_mode & 0o777 == 0o700


def test_ensure_private_dir_refuses_a_dir_others_can_enter(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    with pytest.raises(PermissionError, match="chmod 700"):
        paths.ensure_private_dir(loose)
