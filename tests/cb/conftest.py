"""Fixtures for cb's tests: a scripted OpenAI-compatible server and a project dir cb runs in.

Run: .venv/bin/python -m pytest tests/cb -q
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cb.scripted_server import ScriptedServer


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git-less project dir as cwd, with one small file."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "app.py").write_text("def area(r):\n    return 3.14 * r * r\n", encoding="utf-8")
    monkeypatch.chdir(root)
    return root
