"""`ulm serve --log-file PATH`: the server's log in a size-bounded file, rotated with N backups kept.

The file also becomes the process's stdout and stderr (file descriptors 1 and 2, so what libraries and C code
print lands there too), and stays so across rotations: after each rollover both descriptors are pointed at the
new file. They share the handler's open file, so its size check counts every byte written to it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys


class RotatingOutput(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that also carries fds 1 and 2 over to each new file."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._redirect()

    def doRollover(self) -> None:
        super().doRollover()
        self._redirect()

    def _redirect(self) -> None:
        if self.stream is None:
            return
        self.stream.flush()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        fd = self.stream.fileno()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
