"""Make clipboard text safe to paste into a terminal: no control characters, no escape sequences.

A clip lands in a laptop clipboard and is pasted into a shell, so it must not carry what a terminal
would act on: escape sequences (CSI, OSC, DCS, APC, PM, SOS, their 8-bit C1 forms), the bracketed-paste
end marker `ESC[201~` that would turn the rest of a paste into typed keys, C0 controls (but tab and
newline), DEL, C1 controls, the bidi overrides/isolates that make code read differently from what runs
(Trojan Source), and lone surrogates: the characters of `tools.controls.CONTROLS`. A single pass is
bypassable (`ESC ESC[201~ [201~` leaves `ESC[201~` behind, wezterm #7784), so the passes repeat until
nothing changes. CRLF and lone CR become LF, and trailing newlines are dropped, so a paste never presses
Enter by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.controls import CONTROLS, translation

# ESC- and C1-introduced sequences. Strings (OSC, DCS, SOS, PM, APC) run to BEL, ST (ESC \ or 0x9C) or,
# unterminated, to the end of the text: a terminal would swallow that much, so we drop it too.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"      # CSI ... final byte
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|\Z)"  # OSC/DCS/SOS/PM/APC ... ST
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]",                             # other escapes (ESC c, ESC 7, ESC ( B)
    re.DOTALL,
)
# tools.controls.CONTROLS but tab and newline: C0, DEL, C1, bidi embeddings/overrides/isolates, lone surrogates.
_REMOVE = dict.fromkeys(translation(CONTROLS, keep="\t\n"))
_CR = re.compile(r"\r\n?")


@dataclass(frozen=True)
class Sanitized:
    """The cleaned text and what was taken out (`removed` characters; a trailing newline dropped)."""

    text: str
    removed: int
    dropped_trailing_newline: bool


def _one_pass(text: str) -> str:
    return _SEQUENCE.sub("", text).translate(_REMOVE)


def sanitize(text: str) -> Sanitized:
    """Strip escape sequences and control characters until nothing changes; drop trailing newlines."""
    out = _CR.sub("\n", text)
    while True:
        cleaned = _one_pass(out)
        if cleaned == out:
            break
        out = cleaned
    removed = len(_CR.sub("\n", text)) - len(out)
    stripped = out.rstrip("\n")
    return Sanitized(text=stripped, removed=removed, dropped_trailing_newline=stripped != out)


def notice_line(text: str, width: int = 60) -> str:
    """First line (shortened to `width`) and the line count, for the one-line notice of a write."""
    lines = text.split("\n")
    first = lines[0]
    if len(first) > width:
        first = first[: width - 1] + "…"
    count = len(lines)
    return f"{first!r} ({count} line{'s' if count != 1 else ''}, {len(text.encode('utf-8'))} bytes)"
