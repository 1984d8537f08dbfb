"""The subscriber's acceptance policy (R9, R6): replayed, stale and oversized clips never pass, and the
replay memory survives a listener restart.

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_guard.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cb.clip import message
from cb.clip.guard import Guard
from cb.clip.message import ClipMessage

KEY = b"g" * 32
NOW = 1_800_000_000.0


def _signed(seq: int, ts: float = NOW, text: str = "x", sender: str = "box-1") -> bytes:
    return message.encode(ClipMessage(sender=sender, seq=seq, ts_ms=int(ts * 1000), text=text), KEY)


def _guard(state: Path | None = None, max_bytes: int = 1 << 20) -> Guard:
    return Guard(KEY, max_bytes, max_age_s=120, state_path=state, clock=lambda: NOW)


def test_in_order_messages_pass_and_report_gaps() -> None:
    g = _guard()
    assert g.check(_signed(5)).accepted
    v = g.check(_signed(9))
    assert v.accepted and v.missed == 3


def test_replay_of_the_same_or_an_older_seq_is_refused() -> None:
    g = _guard()
    first = _signed(5)
    assert g.check(first).accepted
    assert g.check(first).reason == "replayed"
    assert g.check(_signed(4, text="older")).reason == "replayed"


def test_sequence_numbers_are_per_sender() -> None:
    g = _guard()
    assert g.check(_signed(5, sender="a")).accepted
    assert g.check(_signed(1, sender="b")).accepted


@pytest.mark.parametrize("skew_s", [-300, 300, -121])
def test_clips_outside_the_age_window_are_stale(skew_s: float) -> None:
    assert _guard().check(_signed(1, ts=NOW + skew_s)).reason == "stale"


def test_clip_inside_the_window_passes() -> None:
    assert _guard().check(_signed(1, ts=NOW - 100)).accepted


def test_a_stale_clip_does_not_advance_the_sequence() -> None:
    g = _guard()
    assert g.check(_signed(7, ts=NOW - 600)).reason == "stale"
    assert g.check(_signed(6)).accepted


def test_forged_clip_is_refused_and_does_not_advance_the_sequence() -> None:
    g = _guard()
    forged = message.encode(ClipMessage(sender="box-1", seq=100, ts_ms=int(NOW * 1000), text="x"), b"k" * 32)
    assert g.check(forged).reason == "forged"
    assert g.check(_signed(2)).accepted


def test_oversized_is_refused() -> None:
    g = _guard(max_bytes=1000)
    assert g.check(_signed(1, text="x" * 1001)).reason == "oversized"
    assert g.check(_signed(2, text="x" * 1000)).accepted


def test_replay_memory_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "seen.json"
    g = _guard(state)
    assert g.check(_signed(41, text="long text " * 20, sender="a-much-longer-sender-name")).accepted
    g.save()
    assert g.check(_signed(42)).accepted
    g.save()  # shorter JSON than before: padded in place, still parses
    g.close()
    again = _guard(state)
    assert again.check(_signed(42)).reason == "replayed"
    assert again.check(_signed(41, sender="a-much-longer-sender-name")).reason == "replayed"
    assert again.check(_signed(43)).accepted


def test_a_torn_state_file_reads_as_empty(tmp_path: Path) -> None:
    state = tmp_path / "seen.json"
    state.write_text('{"last_seq": {"box-1": 4', encoding="utf-8")
    assert _guard(state).check(_signed(1)).accepted


@st.composite
def _deliveries(draw: st.DrawFn) -> list[tuple[str, int, str]]:
    """A stream of (sender, seq, kind) with kind in valid / wrong-key / stale, seqs in any order."""
    return draw(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 30),
                                   st.sampled_from(["valid", "valid", "wrong-key", "stale"])), max_size=60))


@given(_deliveries())
def test_accepted_sequence_numbers_strictly_increase_per_sender(deliveries: list[tuple[str, int, str]]) -> None:
    g = _guard()
    last: dict[str, int] = {}
    for sender, seq, kind in deliveries:
        if kind == "wrong-key":
            payload = message.encode(ClipMessage(sender=sender, seq=seq, ts_ms=int(NOW * 1000), text="x"), b"w" * 32)
        else:
            payload = _signed(seq, ts=NOW - (1000 if kind == "stale" else 0), sender=sender)
        verdict = g.check(payload)
        if verdict.accepted:
            assert kind == "valid" and seq > last.get(sender, 0)
            assert verdict.missed == (seq - last[sender] - 1 if sender in last else 0)
            last[sender] = seq
        else:
            assert kind != "valid" or seq <= last.get(sender, 0)
