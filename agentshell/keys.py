"""What may be typed into a tab: named keys (`--keys`) and the defusing of free text.

Free text (`send ID TEXT`, the model's `run` proposals) is typed as printable characters, tab and newlines
only: bracketed-paste markers (`ESC[200~`, `ESC[201~`, also 8-bit `0x9b200~`) are removed until nothing
changes, and every other control (ESC, C0 but TAB/LF/CR, DEL, C1) is dropped, so no text can end a paste,
fake a key sequence or drive the tab's terminal. Control keys are sent by name instead.
"""

from __future__ import annotations

import re

_PASTE_MARKERS = re.compile("(?:\x1b\\[|\x9b)20[01]~")
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

NAMED_KEYS: dict[str, bytes] = {
    "enter": b"\r", "tab": b"\t", "escape": b"\x1b", "esc": b"\x1b", "space": b" ", "backspace": b"\x7f",
    "bspace": b"\x7f", "delete": b"\x1b[3~", "del": b"\x1b[3~", "insert": b"\x1b[2~",
    "up": b"\x1b[A", "down": b"\x1b[B", "right": b"\x1b[C", "left": b"\x1b[D",
    "home": b"\x1b[H", "end": b"\x1b[F", "pageup": b"\x1b[5~", "pagedown": b"\x1b[6~",
    "ppage": b"\x1b[5~", "npage": b"\x1b[6~",
    **{f"f{n}": seq for n, seq in zip(range(1, 13), (
        b"\x1bOP", b"\x1bOQ", b"\x1bOR", b"\x1bOS", b"\x1b[15~", b"\x1b[17~", b"\x1b[18~", b"\x1b[19~",
        b"\x1b[20~", b"\x1b[21~", b"\x1b[23~", b"\x1b[24~"), strict=True)},
}


def defuse(text: str) -> tuple[str, int]:
    """(text safe to type, number of characters removed)."""
    clean = text
    while True:
        stripped = _PASTE_MARKERS.sub("", clean)
        stripped = _CONTROLS.sub("", stripped)
        if stripped == clean:
            break
        clean = stripped
    return clean, len(text) - len(clean)


def key_bytes(name: str) -> bytes:
    """Bytes for a key name: Enter, Tab, Escape, Up/Down/Left/Right, Home, End, PageUp, F1-F12, Space,
    BSpace, C-<letter> (control: C-c = interrupt, C-d = end of input, C-z = suspend), M-<char> (alt),
    hex:<bytes> (exact bytes).
    ValueError on an unknown name."""
    key = name.strip()
    if key.startswith("hex:"):  # exact bytes, for attach's keystroke passthrough
        try:
            return bytes.fromhex(key[4:])
        except ValueError:
            raise ValueError(f"bad hex key {name!r}") from None
    lowered = key.lower()
    if lowered in NAMED_KEYS:
        return NAMED_KEYS[lowered]
    if lowered.startswith(("c-", "ctrl-", "^")) and len(key.split("-")[-1].lstrip("^")) == 1:
        char = key.split("-")[-1].lstrip("^").upper() if not key.startswith("^") else key[1:].upper()
        code = ord(char)
        if 0x40 <= code <= 0x5F or char == "?":
            return bytes([0x7F if char == "?" else code - 0x40])
    if lowered.startswith(("m-", "alt-")) and len(key.split("-", 1)[1]) == 1:
        return b"\x1b" + key.split("-", 1)[1].encode()
    raise ValueError(f"unknown key {name!r} (try Enter, Tab, Escape, Up, C-c, M-x, F1)")
