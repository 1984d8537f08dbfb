"""Tab output rendered as plain text the way a terminal would show it, with the pyte terminal emulator.

Carriage-return redraws, cursor moves, erases and colours are interpreted (not regex-stripped). Only a
bounded slice of the ring is fed to the emulator, starting after a newline, so rendering costs the same
whatever the tab has printed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import pyte

from agentshell.protocol import NEW_MARKER

TAIL_FEED_MIN = 16 << 10
TAIL_FEED_MAX = 256 << 10
SCREEN_FEED = 64 << 10


class _ScrollbackScreen(pyte.Screen):
    """A pyte screen that keeps the text of the lines scrolled off its top (the last `keep` of them)."""

    def __init__(self, cols: int, rows: int, keep: int) -> None:
        super().__init__(cols, rows)
        self.scrolled: deque[str] = deque(maxlen=keep)
        self.scrolled_total = 0

    def index(self) -> None:
        top, bottom = self.margins or pyte.screens.Margins(0, self.lines - 1)
        if self.cursor.y == bottom and top == 0:
            self.scrolled.append(_row_text(self.buffer[0], self.columns))
            self.scrolled_total += 1
        super().index()

    def set_title(self, param: str) -> None:  # titles are not shown; don't keep attacker-sized strings
        pass

    def set_icon_name(self, param: str) -> None:
        pass

    def write_process_input(self, data: str) -> None:  # queries (CSI 6n, DA) get no reply: nobody reads it
        pass


def _row_text(row: dict[int, pyte.screens.Char], cols: int) -> str:
    return "".join(row[x].data for x in range(cols)).rstrip()


def _feed_start(data: bytes) -> int:
    """Where to start feeding a slice cut from the middle of output: after its first newline, if any."""
    nl = data.find(b"\n")
    return nl + 1 if 0 <= nl < len(data) - 1 else 0


@dataclass
class Rendered:
    lines: list[str]
    new_from: int | None


def render_tail(data: bytes, data_start: int, seen: int | None, cols: int, rows: int, lines: int,
                cut: bool) -> Rendered:
    """The last `lines` lines of `data` (output from absolute offset `data_start`) rendered at cols x rows.

    `seen` = the reader's mark: lines from the one the cursor was on at that offset are new. `cut` = `data`
    starts mid-output (so start after its first newline).
    """
    begin = _feed_start(data) if cut else 0
    screen = _ScrollbackScreen(max(cols, 2), max(rows, 2), keep=lines + rows)
    stream = pyte.ByteStream(screen)
    split = None if seen is None else min(max(seen - data_start, begin), len(data))
    new_line_index: int | None = None
    if split is not None and split < len(data):
        stream.feed(data[begin:split])
        new_line_index = screen.scrolled_total + screen.cursor.y
        stream.feed(data[split:])
    else:
        stream.feed(data[begin:])
    rows_text = [_row_text(screen.buffer[y], screen.columns) for y in range(screen.lines)]
    while rows_text and not rows_text[-1]:
        rows_text.pop()
    shown = rows_text
    all_lines = [*screen.scrolled, *shown]
    first_index = screen.scrolled_total - len(screen.scrolled)  # absolute index of all_lines[0]
    tail = all_lines[-lines:] if lines > 0 else []
    tail_first = first_index + len(all_lines) - len(tail)
    new_from = None
    if new_line_index is not None:
        new_from = max(new_line_index - tail_first, 0)
        if new_from >= len(tail):
            new_from = None
    return Rendered(tail, new_from)


def join_with_marker(lines: list[str], new_from: int | None, dropped_note: str | None = None) -> str:
    out = list(lines)
    if new_from is not None:
        out.insert(new_from, NEW_MARKER)
    if dropped_note:
        out.insert(0, dropped_note)
    return "\n".join(out)


def tail_feed_size(lines: int, cols: int) -> int:
    return min(max(TAIL_FEED_MIN, lines * cols * 2), TAIL_FEED_MAX)


def render_screen(data: bytes, cols: int, rows: int, cut: bool) -> tuple[list[str], tuple[int, int]]:
    """The screen after `data` at cols x rows: (rows of text, (cursor x, cursor y))."""
    screen = _ScrollbackScreen(max(cols, 2), max(rows, 2), keep=0)
    pyte.ByteStream(screen).feed(data[_feed_start(data) if cut else 0:])
    return [_row_text(screen.buffer[y], screen.columns) for y in range(screen.lines)], (screen.cursor.x,
                                                                                          screen.cursor.y)


def redraw_bytes(data: bytes, cols: int, rows: int, cut: bool) -> bytes:
    """Bytes that paint the current screen (plain text) on an attaching terminal: clear, rows, cursor."""
    lines, (x, y) = render_screen(data, cols, rows, cut)
    body = "\r\n".join(lines)
    return f"\x1b[H\x1b[2J{body}\x1b[{y + 1};{x + 1}H".encode()
