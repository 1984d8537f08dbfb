"""`agentshell attach`: an interactive view of a tab in the user's terminal, until the detach key.

The local terminal goes raw; keystrokes are sent to the tab as they come (the detach key excepted), the tab's
output (already defused by the daemon of clipboard writes and terminal queries) is written to stdout, and a
window resize resizes the tab. Detaching leaves the tab running.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import sys
import termios
import tty
from types import FrameType

from agentshell import protocol as p
from agentshell.client import Client, check

DEFAULT_DETACH = "C-]"


def detach_byte(key: str) -> int:
    """'C-]' -> 0x1d, 'C-a' -> 0x01. ValueError on anything but a control key."""
    text = key.strip()
    if len(text) == 3 and text[:2].lower() == "c-":
        code = ord(text[2].upper())
        if 0x40 <= code <= 0x5F:
            return code - 0x40
    raise ValueError(f"detach key must be a control key like C-] or C-a, not {key!r}")


def attach(client: Client, tab: str, detach_key: str = DEFAULT_DETACH) -> p.TabInfo | None:
    """Run the interactive view; returns the tab's info if it exited while attached, None on detach."""
    detach = detach_byte(detach_key)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    if not os.isatty(stdin):
        raise p.BadRequest("attach needs a terminal on stdin")
    cols, rows = shutil.get_terminal_size()
    client.resize(tab, cols, rows)
    request_id, redraw, info = client.attach(tab)
    saved = termios.tcgetattr(stdin)
    resized = [False]

    def on_winch(signum: int, frame: FrameType | None) -> None:
        resized[0] = True

    old_winch = signal.signal(signal.SIGWINCH, on_winch)
    selector = selectors.DefaultSelector()
    try:
        tty.setraw(stdin)
        os.write(stdout, redraw)
        selector.register(stdin, selectors.EVENT_READ, "in")
        selector.register(client.fileno(), selectors.EVENT_READ, "out")
        while True:
            if resized[0]:
                resized[0] = False
                cols, rows = shutil.get_terminal_size()
                client.send_request(p.Resize(tab, cols, rows))
            for key, _ in selector.select(timeout=0.5):
                if key.data == "in":
                    data = os.read(stdin, 4096)
                    if not data or detach in data:
                        before = data.split(bytes([detach]))[0] if data else b""
                        if before:
                            _send_raw(client, tab, before)
                        return None
                    _send_raw(client, tab, data)
                else:
                    frame = client.recv_frame(timeout=10.0)
                    if frame.get("id") != request_id:
                        if frame.get("ok") is False:
                            check(frame)
                        continue
                    if frame.get("event") == "output":
                        os.write(stdout, p.unb64(frame["data_b64"]))
                    elif frame.get("event") == "exit":
                        return p.TabInfo.from_wire(frame["tab"])
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        selector.close()
        with contextlib.suppress(p.AgentshellError):
            client.send_request(p.Detach())
        os.write(stdout, b"\r\n")
    return info


def _send_raw(client: Client, tab: str, data: bytes) -> None:
    """Keystrokes from the user's own keyboard go through as they are (arrows, control keys, paste)."""
    client.send_request(p.SendInput(tab, keys=[f"hex:{data.hex()}"]))
