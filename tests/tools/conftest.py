"""Fixtures for the tools tests: a workspace dir and a journal in CB_HOME (helpers: tests/tools/support.py).

Run with `.venv/bin/python -m pytest tests/tools -q`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cb import paths
from tools import Journal


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """An empty workspace root."""
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def journal() -> Journal:
    """The undo journal where cb keeps it (CB_HOME is a per-test temp dir)."""
    return Journal(paths.undo_dir())
