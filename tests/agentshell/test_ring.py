"""The byte-capped output ring."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentshell.daemon.ring import Ring


def test_oldest_bytes_are_dropped_past_the_cap_and_offsets_stay_absolute() -> None:
    ring = Ring(cap=10)
    ring.append(b"0123456789")
    ring.append(b"abcd")
    assert bytes(ring.buf) == b"456789abcd"
    assert (ring.start, ring.end, ring.dropped) == (4, 14, 4)
    data, start, dropped = ring.slice(since=2)
    assert (data, start, dropped) == (b"456789abcd", 4, 2)
    assert ring.slice(since=12) == (b"cd", 12, 0)
    assert ring.slice(tail=3) == (b"bcd", 11, 0)
    assert ring.slice(since=99) == (b"", 14, 0)


@given(st.lists(st.binary(max_size=50), max_size=40), st.integers(1, 64))
def test_ring_keeps_exactly_the_last_cap_bytes(chunks: list[bytes], cap: int) -> None:
    ring = Ring(cap)
    for chunk in chunks:
        ring.append(chunk)
    everything = b"".join(chunks)
    assert bytes(ring.buf) == everything[-cap:] if everything else ring.buf == b""
    assert ring.end == len(everything)
    assert len(ring.buf) <= cap
