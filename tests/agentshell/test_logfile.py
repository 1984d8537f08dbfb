"""A tab's rotating log file: the size cap holds even for one write far larger than it.

Run: .venv/bin/python -m pytest tests/agentshell/test_logfile.py -q
"""

from __future__ import annotations

from pathlib import Path

from agentshell.daemon.logfile import PIECE, RotatingLog


def test_one_large_write_is_rotated_piece_by_piece_and_nothing_kept_is_lost(tmp_path: Path) -> None:
    data = bytes(range(256)) * 600  # 150 KiB in one write, as a daemon wake-up joining several PTY reads
    log = RotatingLog(tmp_path / "tab.log", max_bytes=20000, backups=2)
    log.write(data)
    log.close()
    files = log.paths()
    assert [f.name for f in files] == ["tab.log.2", "tab.log.1", "tab.log"]
    assert all(f.stat().st_size < 20000 + PIECE for f in files)
    assert b"".join(f.read_bytes() for f in files) == data
