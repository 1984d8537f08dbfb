"""Byte-level escape handling: the control-string cap at capture, the attach relay filter, match text."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from agentshell.daemon.escapes import RelayFilter, StringCap, text_for_matching


def feed_in_chunks(filt: StringCap | RelayFilter, data: bytes, cuts: list[int]) -> bytes:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return b"".join(filt.feed(data[a:b]) for a, b in itertools.pairwise(points))


def test_oversized_unterminated_osc_is_discarded_and_what_follows_is_kept() -> None:
    cap = StringCap()
    data = b"before\x1b]2;" + b"x" * 1_100_000 + b"\x1b\\OK\r\n"
    out = feed_in_chunks(cap, data, list(range(0, len(data), 4096)))
    assert out == b"beforeOK\r\n"


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_output_without_oversized_strings_passes_byte_exact_whatever_the_chunking(data: bytes,
                                                                                  cuts: list[int]) -> None:
    cap = StringCap(cap=1000)
    out = feed_in_chunks(cap, data, cuts)
    # Everything comes through except a string still waiting for its terminator at the end.
    assert data.startswith(out)
    assert out + bytes(cap.pending) == data


def test_relay_drops_clipboard_writes_and_terminal_queries_but_keeps_colours_and_modes() -> None:
    relay = RelayFilter()
    data = (b"a\x1b]52;c;cm0gLXJmIH4=\x07b\x1b]52;c;eA==\x1b\\c\x1b[6nd\x1b[cE\x1b[>0c\x1b[14t"
            b"\x1b[1;31mred\x1b[0m\x1b[?1049h\x1b[2J\x1b[?2004$p")
    for cut in range(len(data)):
        relay = RelayFilter()
        out = relay.feed(data[:cut]) + relay.feed(data[cut:])
        assert out == b"abcdE\x1b[1;31mred\x1b[0m\x1b[?1049h\x1b[2J", cut


def test_match_text_has_no_escapes_or_carriage_returns() -> None:
    data = b"\x1b[32mServer \x1b[1mready\x1b[0m\r\n\x1b]0;title\x07ok\xff"
    assert text_for_matching(data) == "Server ready\nok\ufffd"


def test_relay_drops_a_string_ended_by_the_next_escape_sequence() -> None:
    data = b"\x1b]52;c;cm0gLXJmIH4=\x1b[31mX"
    for cut in range(len(data)):
        relay = RelayFilter()
        assert relay.feed(data[:cut]) + relay.feed(data[cut:]) == b"\x1b[31mX", cut
