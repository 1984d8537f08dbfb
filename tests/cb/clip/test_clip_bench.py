"""The benchmark's accounting: lost, duplicated, reordered and superseded clips, and latency to coverage.

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_bench.py -q
"""

from __future__ import annotations

import pytest

from cb.clip.bench import _row, format_rows


def test_superseded_clip_is_timed_to_the_write_that_covered_it() -> None:
    starts = [0.0, 1.0, 2.0, 3.0]
    row = _row("x", 4, starts, [(0.5, 0), (2.5, 2), (3.25, 3)], superseded=1)
    assert (row.lost, row.duplicated, row.reordered, row.superseded) == (0, 0, 0, 1)
    assert row.latencies_ms == pytest.approx([500.0, 1500.0, 500.0, 250.0])


def test_lost_duplicated_and_reordered_are_counted() -> None:
    row = _row("x", 4, [0.0] * 4, [(1.0, 0), (2.0, 2), (2.5, 1), (3.0, 2)])
    assert (row.lost, row.duplicated, row.reordered) == (1, 1, 1)
    assert len(row.latencies_ms) == 3  # clip 3 never covered: no sample


def test_table_states_whether_the_target_was_met() -> None:
    good = _row("bridge", 2, [0.0, 0.0], [(0.001, 0), (0.002, 1)])
    assert format_rows([good, good]).endswith("-> met")
    slow = _row("bridge", 2, [0.0, 0.0], [(0.001, 0), (0.5, 1)])
    assert format_rows([slow, good]).endswith("-> NOT met")
