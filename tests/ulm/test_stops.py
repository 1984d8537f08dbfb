"""Stop strings across token boundaries: never emitted, prefixes held back until decided.

Run: .venv/bin/python -m pytest tests/ulm/test_stops.py -q
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ulm.stops import StopStrings


def _run(stops: list[str], deltas: list[str]) -> tuple[list[str], bool]:
    matcher = StopStrings(stops)
    out: list[str] = []
    stopped = False
    for delta in deltas:
        emit, stopped = matcher.feed(delta)
        out.append(emit)
        if stopped:
            break
    if not stopped:
        out.append(matcher.flush())
    return out, stopped


def test_stop_split_across_deltas_is_cut_and_never_emitted() -> None:
    out, stopped = _run(["group of peo"], ["a gr", "oup ", "of", " pe", "ople here"])
    assert stopped and "".join(out) == "a "
    assert out == ["a ", "", "", "", ""]  # "gr…" held back until decided


def test_stop_inside_a_delta_cuts_mid_delta() -> None:
    out, stopped = _run(["gani"], ["the or", "ganization"])
    assert stopped and "".join(out) == "the or"


def test_held_prefix_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    out, stopped = _run(["\n\nUser:"], ["hi\n", "\nthere"])
    assert not stopped and out == ["hi", "\n\nthere", ""]


def test_earliest_of_several_stops_wins() -> None:
    out, stopped = _run(["xyz", "b"], ["aaxyzb"])
    assert stopped and "".join(out) == "aa"


def test_the_stop_that_completes_first_wins_however_the_text_is_split() -> None:
    # "aba" starts before "b" but completes after it: generation would have stopped at "b".
    for deltas in (["aaba"], ["aab", "a"], ["a", "a", "b", "a"]):
        out, stopped = _run(["aba", "b"], deltas)
        assert stopped and "".join(out) == "aa", deltas


def test_stop_as_the_first_text_emits_nothing() -> None:
    out, stopped = _run(["."], [".rest"])
    assert stopped and out == [""]


def test_flush_returns_held_text_at_the_end() -> None:
    out, stopped = _run(["END"], ["the E", "N"])
    assert not stopped and "".join(out) == "the EN"


@given(st.text(alphabet="ab.\n", max_size=40), st.lists(st.text(alphabet="ab.\n", min_size=1, max_size=4),
                                                      min_size=1, max_size=3), st.data())
def test_streamed_output_is_cut_at_the_first_stop_to_complete_and_no_delta_leaks_a_stop(
        text: str, stops: list[str], data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10)))
    deltas = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    out, stopped = _run(stops, deltas)
    # The first stop to complete (earliest end, then earliest start) cuts the text, however it is split.
    matches = [(p + len(s), p) for s in stops if (p := text.find(s)) >= 0]
    expected = text[: min(matches)[1]] if matches else text
    assert "".join(out) == expected
    assert stopped == bool(matches)
    emitted = ""
    for delta in out:
        emitted += delta
        assert not any(s in emitted for s in stops)

