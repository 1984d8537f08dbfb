"""Clipboard backends for the subscriber: the real one (pyperclip, bounded in time) and a recording one.

`PyperclipBackend.set` runs pyperclip's copy in a worker thread and waits at most `timeout_s`: a
clipboard tool that hangs (wl-copy without a compositor, xclip on a stuck display) is reported as a
ClipboardError and abandoned, and the subscriber goes on. pyperclip ignores the exit status of the
tools it runs (xclip with no display "succeeds"), so the backend reads the clipboard back and reports
a mismatch as a failure. `RecordingBackend` keeps every text with its arrival time (benchmark, tests);
`StdoutBackend` writes each text to stdout (`cb clip listen --stdout`, for scripts).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from cb.clip.errors import ClipError

MAX_ABANDONED = 4


class ClipboardError(ClipError):
    """The clipboard could not be set; the message says why, in one line."""


class ClipboardBackend(Protocol):
    name: str

    def set(self, text: str) -> None:
        """Put `text` on the clipboard or raise ClipboardError."""


def _run_with_timeout(fn: object, args: tuple[object, ...], timeout_s: float, what: str) -> object:
    """Call fn(*args) in a daemon thread; raise ClipboardError if it raises or outlives `timeout_s`."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["value"] = fn(*args)  # type: ignore[operator]
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"cb-clip-{what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise ClipboardError(f"clipboard tool did not finish {what} within {timeout_s:g} s (abandoned)")
    if "error" in box:
        exc = box["error"]
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipboardError(f"clipboard tool failed ({what}): {detail}")
    return box.get("value")


class PyperclipBackend:
    """The system clipboard through pyperclip (pbcopy, xclip/xsel, wl-copy, Windows), with a timeout."""

    def __init__(self, timeout_s: float = 2.0, verify: bool = True) -> None:
        self.timeout_s = timeout_s
        self.verify = verify
        self.name = "pyperclip"

    def _hung_threads(self) -> int:
        alive = [t for t in threading.enumerate() if t.name.startswith("cb-clip-") and t.daemon]
        return len(alive)

    def set(self, text: str) -> None:
        import pyperclip

        if self._hung_threads() >= MAX_ABANDONED:
            raise ClipboardError(f"{MAX_ABANDONED} clipboard tool runs are still hung; not starting another")
        _run_with_timeout(pyperclip.copy, (text,), self.timeout_s, "copy")
        if self.verify:
            back = _run_with_timeout(pyperclip.paste, (), self.timeout_s, "read-back")
            if back != text:
                raise ClipboardError("clipboard tool ran but the clipboard does not hold the text "
                                     "(no display? check DISPLAY / WAYLAND_DISPLAY)")


@dataclass
class RecordingBackend:
    """Records (time.perf_counter(), text) for every set; `fail_with` makes sets raise instead."""

    name: str = "recording"
    records: list[tuple[float, str]] = field(default_factory=list)
    fail_with: str | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def set(self, text: str) -> None:
        if self.fail_with:
            raise ClipboardError(self.fail_with)
        with self._cond:
            self.records.append((time.perf_counter(), text))
            self._cond.notify_all()

    @property
    def texts(self) -> list[str]:
        with self._cond:
            return [t for _, t in self.records]

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Block until at least `count` sets happened or `timeout_s` passed; True if reached."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.records) >= count, timeout_s)


class StdoutBackend:
    """Writes each clip to stdout followed by a newline, instead of a clipboard."""

    name = "stdout"

    def set(self, text: str) -> None:
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except OSError as exc:
            raise ClipboardError(f"cannot write to stdout: {exc}") from None
