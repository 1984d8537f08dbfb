"""OSC 52: ask the terminal itself to set the clipboard (the fallback when no Redis is configured).

The sequence is `ESC ] 52 ; c ; <base64 of the UTF-8 text> BEL`. Inside tmux it must be wrapped in a
DCS passthrough (`ESC P tmux; ... ESC \\`, every ESC inside doubled), and tmux needs
`set -g allow-passthrough on` (or `set-clipboard on` for the plain form); inside GNU screen in a
plain DCS. It is written to the controlling terminal (/dev/tty), so it works with stdout redirected.
"""

from __future__ import annotations

import base64
import os

from cb.clip.errors import ClipError


def osc52_sequence(text: str, multiplexer: str | None = None) -> bytes:
    """The bytes that set the clipboard to `text`; `multiplexer` is None, "tmux" or "screen"."""
    b64 = base64.b64encode(text.encode("utf-8"))
    seq = b"\x1b]52;c;" + b64 + b"\x07"
    if multiplexer == "tmux":
        return b"\x1bPtmux;" + seq.replace(b"\x1b", b"\x1b\x1b") + b"\x1b\\"
    if multiplexer == "screen":
        return b"\x1bP" + seq + b"\x1b\\"
    return seq


def detect_multiplexer(environ: dict[str, str] | None = None) -> str | None:
    """"tmux" when $TMUX is set, "screen" when $STY is set or TERM starts with screen, else None."""
    env = os.environ if environ is None else environ
    if env.get("TMUX"):
        return "tmux"
    if env.get("STY") or (env.get("TERM", "").startswith("screen") and not env.get("TMUX")):
        return "screen"
    return None


def write_osc52(text: str, tty_path: str = "/dev/tty", multiplexer: str | None = None) -> str:
    """Write the OSC 52 sequence for `text` to the controlling terminal; return the form used."""
    data = osc52_sequence(text, multiplexer)
    try:
        fd = os.open(tty_path, os.O_WRONLY | os.O_NOCTTY)
    except OSError as exc:
        raise ClipError(f"no Redis configured (CB_REDIS_URL) and no terminal for OSC 52: {exc.strerror}") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return f"osc52+{multiplexer}" if multiplexer else "osc52"
