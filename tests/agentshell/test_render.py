"""Tail and screen rendering through the pyte terminal emulator."""

from __future__ import annotations

from agentshell.daemon.render import join_with_marker, render_screen, render_tail
from agentshell.protocol import NEW_MARKER


def test_carriage_return_redraws_and_colours_render_as_the_terminal_shows_them() -> None:
    data = b"build\r\n 10%\r 55%\r100%\r\n\x1b[1;32mPASSED\x1b[0m 3 tests\r\n$ "
    r = render_tail(data, 0, None, cols=80, rows=24, lines=10, cut=False)
    assert r.lines == ["build", "100%", "PASSED 3 tests", "$"]
    assert r.new_from is None


def test_cursor_moves_and_erases_are_interpreted() -> None:
    data = b"one\r\ntwo\r\nthree\x1b[1A\x1b[2K\rTWO!\r\n"
    assert render_tail(data, 0, None, 80, 24, 10, False).lines == ["one", "TWO!", "three"]


def test_tail_keeps_the_last_lines_across_scrolling() -> None:
    data = b"".join(b"line %d\r\n" % i for i in range(100))
    r = render_tail(data, 0, None, cols=40, rows=10, lines=5, cut=False)
    assert r.lines == [f"line {i}" for i in range(95, 100)]


def test_marker_goes_before_the_first_line_new_since_the_readers_mark() -> None:
    old = b"".join(b"old %d\r\n" % i for i in range(30))
    new = b"new a\r\nnew b\r\n"
    r = render_tail(old + new, 0, len(old), cols=40, rows=10, lines=6, cut=False)
    assert r.lines[r.new_from:] == ["new a", "new b"]
    text = join_with_marker(r.lines, r.new_from)
    assert text.splitlines()[-3:] == [NEW_MARKER, "new a", "new b"]


def test_no_marker_when_nothing_is_new_and_offsets_are_absolute() -> None:
    data = b"a\r\nb\r\n"
    r = render_tail(data, 1000, 1000 + len(data), cols=40, rows=10, lines=6, cut=False)
    assert r.new_from is None and r.lines == ["a", "b"]


def test_a_slice_cut_mid_output_starts_after_its_first_newline() -> None:
    data = b"\x1b[31mhalf a line\r\nwhole\r\n"
    assert render_tail(data[3:], 3, None, 40, 10, 5, cut=True).lines == ["whole"]


def test_screen_renders_absolute_cursor_positioning_and_reports_the_cursor() -> None:
    lines, cursor = render_screen(b"\x1b[2J\x1b[3;5Hhi\x1b[1;1Htop", cols=20, rows=4, cut=False)
    assert lines == ["top", "", "    hi", ""]
    assert cursor == (3, 0)


def test_wide_characters_and_invalid_utf8_do_not_break_rendering() -> None:
    r = render_tail("日本 ok\r\n".encode() + b"\xff\xfe bad\r\n", 0, None, 40, 10, 5, False)
    assert r.lines[0].replace(" ", "") .startswith("日本") and r.lines[1].endswith("bad")
