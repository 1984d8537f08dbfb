"""Suite-wide fixtures. Every test runs with CB_HOME in its own temp dir, so no test reads or writes
the real user's config, state, cache or sockets.

Run the whole suite with `make test`; a part with e.g. `.venv/bin/python -m pytest tests/cb -q`.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def cb_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CB_HOME (and the XDG dirs, for code that bypasses it) at a fresh temp dir."""
    home = tmp_path_factory.mktemp("cb_home")
    monkeypatch.setenv("CB_HOME", str(home))
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    return home
