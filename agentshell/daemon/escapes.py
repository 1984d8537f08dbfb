"""Escape-sequence handling on raw tab output: the string-length cap at capture, the attach relay filter,
and the stripping used to match `wait --for` patterns.

Rendering for humans and the prompt is a terminal emulator's job (render.py, pyte); these are the three
byte-level jobs that must run on the stream itself.
"""

from __future__ import annotations

import re

STRING_CAP = 1 << 20  # like tmux's input-buffer-size: a longer OSC/DCS/APC/PM/SOS string is discarded
_STRING_INTRODUCERS = b"]P_^X"

_NORMAL, _ESC, _STRING, _STRING_ESC, _DISCARD, _DISCARD_ESC = range(6)


class StringCap:
    """Drops control strings (OSC, DCS, APC, PM, SOS) longer than `cap` bytes, carrying state across chunks.

    Every other byte passes through unchanged, so stored output stays exact; a string is held back only until
    its terminator (BEL or ESC \\) arrives. The common case (no ESC, not inside a string) is one `find`.
    """

    def __init__(self, cap: int = STRING_CAP) -> None:
        self.cap = cap
        self.state = _NORMAL
        self.pending = bytearray()  # the string being held back, ESC included
        self.discarded = 0  # bytes discarded, for the record

    def feed(self, data: bytes) -> bytes:
        if self.state == _NORMAL and b"\x1b" not in data:
            return data
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            if self.state == _NORMAL:
                j = data.find(b"\x1b", i)
                if j < 0:
                    out += data[i:]
                    break
                out += data[i:j]
                self.pending = bytearray(b"\x1b")
                self.state = _ESC
                i = j + 1
            elif self.state == _ESC:
                if data[i] in _STRING_INTRODUCERS:
                    self.pending.append(data[i])
                    self.state = _STRING
                    i += 1
                else:
                    out += self.pending
                    self.pending = bytearray()
                    self.state = _NORMAL
            elif self.state in (_STRING, _DISCARD):
                keep = self.state == _STRING
                j = _first_of(data, i, b"\x07", b"\x1b")
                stop = n if j < 0 else j
                if keep:
                    self.pending += data[i:stop]
                    if len(self.pending) > self.cap:
                        self.discarded += len(self.pending)
                        self.pending = bytearray()
                        self.state = _DISCARD
                        keep = False
                else:
                    self.discarded += stop - i
                if j < 0:
                    break
                if data[j] == 0x07:
                    if keep:
                        out += self.pending + b"\x07"
                    self._end_string()
                    i = j + 1
                else:
                    self.state = _STRING_ESC if keep else _DISCARD_ESC
                    i = j + 1
            else:  # ESC inside a string: ESC \ ends it; ESC + anything else ends it and starts over
                keep = self.state == _STRING_ESC
                if data[i] == 0x5C:
                    if keep:
                        out += self.pending + b"\x1b\\"
                    self._end_string()
                    i += 1
                else:
                    if keep:
                        out += self.pending
                    self._end_string()
                    self.pending = bytearray(b"\x1b")
                    self.state = _ESC
        return bytes(out)

    def _end_string(self) -> None:
        self.pending = bytearray()
        self.state = _NORMAL


def _first_of(data: bytes, start: int, a: bytes, b: bytes) -> int:
    i, j = data.find(a, start), data.find(b, start)
    if i < 0:
        return j
    return i if j < 0 else min(i, j)


# --- the attach relay -------------------------------------------------------------------------------------

_SEQUENCE = re.compile(
    # A control string (OSC 52, titles, DCS...): dropped. It ends at BEL, ST, any other ESC, or the end of the
    # chunk, since an unterminated one at the end was cut off into `carry` first.
    rb"\x1b[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\|(?=\x1b)|\Z)"
    rb"|\x1b\\"  # a lone ST (its string was in the previous chunk): dropped
    rb"|\x1b\[([0-?]*)([ -/]*)([@-~])"  # CSI: kept unless it is a query
)
_INCOMPLETE = re.compile(rb"\x1b(?:[\]P_^X][^\x07\x1b]*|\[[0-?]*[ -/]*)?\Z")
_QUERY_FINALS = frozenset(b"nct")  # DSR/cursor report, device attributes, window reports


class RelayFilter:
    """Makes a tab's output safe to relay to the user's terminal (attach): control strings (OSC 52 clipboard
    writes, titles, DCS/APC) are dropped, and so are queries that make a terminal type a reply (CSI n, c, t,
    DECRQM). Incomplete sequences at a chunk's end are carried to the next chunk (up to 64 KiB)."""

    CARRY_MAX = 64 << 10

    def __init__(self) -> None:
        self.carry = b""

    def feed(self, data: bytes) -> bytes:
        data = self.carry + data
        self.carry = b""
        tail = _INCOMPLETE.search(data)
        if tail:
            self.carry = data[tail.start():]
            data = data[:tail.start()]
            if len(self.carry) > self.CARRY_MAX:
                self.carry = b""
        return _SEQUENCE.sub(_keep_or_drop, data)


def _keep_or_drop(m: re.Match[bytes]) -> bytes:
    final = m.group(3)
    if final is None:
        return b""
    if final[0] in _QUERY_FINALS or (final == b"p" and b"$" in m.group(2)):
        return b""
    return m.group(0)


# --- matching ----------------------------------------------------------------------------------------------

_ALL_SEQUENCES = re.compile(
    rb"\x1b[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[ -/]*[0-~]|\r"
)


def text_for_matching(data: bytes) -> str:
    """Output as text with escape sequences and carriage returns removed (what `wait --for` searches)."""
    return _ALL_SEQUENCES.sub(b"", data).decode("utf-8", "replace")
