"""Building and loading the native kernels (ulm/kernels/native.py): cached per machine, off on request,
and a missing or failing compiler costs speed, never a crash.

Run: .venv/bin/python -m pytest tests/ulm/kernels -q
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ulm.kernels import native


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """library() with its per-process memo cleared, building into an empty dir."""
    monkeypatch.setenv("ULM_KERNEL_DIR", str(tmp_path))
    native.library.cache_clear()
    yield tmp_path
    native.library.cache_clear()


def test_the_library_is_built_once_and_then_loaded_from_the_cache(fresh: Path) -> None:
    assert native.library() is not None
    (built,) = fresh.glob("ulm_kernels-*.so")
    stamp = built.stat().st_mtime_ns
    native.library.cache_clear()
    assert native.library() is not None
    assert [p.name for p in fresh.iterdir()] == [built.name] and built.stat().st_mtime_ns == stamp


def test_ulm_native_0_turns_the_kernels_off(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ULM_NATIVE", "0")
    assert native.library() is None
    assert list(fresh.iterdir()) == []


def test_a_failing_compiler_is_reported_once_and_leaves_no_file(fresh: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CC", "false")  # exits 1 for any arguments
    with caplog.at_level(logging.WARNING, logger="ulm"):
        assert native.library() is None
        assert native.library() is None
    (record,) = caplog.records  # logged once: the failure is remembered for the process
    assert "native kernels are unavailable" in record.getMessage() and "false failed" in record.getMessage()
    assert list(fresh.iterdir()) == []


def test_no_compiler_at_all_falls_back_with_a_hint(fresh: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(fresh))
    with caplog.at_level(logging.WARNING, logger="ulm"):
        assert native.library() is None
    assert "no C compiler" in caplog.text
