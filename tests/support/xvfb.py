"""A virtual X display (Xvfb) for tests that drive the real clipboard through xclip.

`Xvfb(...).start()` picks a free display number itself (`-displayfd`) and returns once the server
is ready; `display` is then e.g. ":42". `read_clipboard(display)` is `xclip -o` on the CLIPBOARD
selection, the same selection pyperclip writes.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time

from tests.support.processes import stop_process


class Xvfb:
    """One Xvfb server on a free display number."""

    def __init__(self) -> None:
        if shutil.which("Xvfb") is None or shutil.which("xclip") is None:
            raise RuntimeError("Xvfb and xclip are not installed (make test installs them: SYSTEM_PACKAGES)")
        self.proc: subprocess.Popen[bytes] | None = None
        self.display = ""

    def start(self, timeout_s: float = 15.0) -> Xvfb:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "320x240x24", "-nolisten", "tcp"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        # Read up to the newline: Xvfb writes the number and the newline separately, and dies if the pipe
        # is closed in between ("Cannot write display number").
        got = b""
        deadline = time.monotonic() + timeout_s
        try:
            while not got.endswith(b"\n") and time.monotonic() < deadline:
                if not select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    break
                chunk = os.read(read_fd, 32)
                if not chunk:
                    break
                got += chunk
        finally:
            os.close(read_fd)
        number = got.decode().strip() if got.endswith(b"\n") else ""
        if not number:
            self.stop()
            raise RuntimeError("Xvfb did not report a display number")
        self.display = f":{number}"
        # Xvfb reports its number a moment before clients can connect: wait until xclip can.
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Xvfb on {self.display} does not accept clients")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        out = subprocess.run(["xclip", "-selection", "clipboard", "-o"], env={**os.environ, "DISPLAY": self.display},
                             capture_output=True, timeout=5)
        return b"Can't open display" not in out.stderr

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def read_clipboard(display: str, timeout_s: float = 5.0) -> str:
    """The CLIPBOARD selection on `display`, read with `xclip -o` (which, unlike `xclip -i`, does not
    leave a child holding the output pipe)."""
    env = {**os.environ, "DISPLAY": display}
    out = subprocess.run(["xclip", "-selection", "clipboard", "-o"], env=env, capture_output=True,
                         timeout=timeout_s)
    return out.stdout.decode("utf-8")
