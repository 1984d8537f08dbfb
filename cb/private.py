"""Files that may hold keys (config.toml, .cb.toml, clip.env): written private and atomically, checked on read.

`write_private(path, text)` writes a temp file (mode 0600 from its creation) in the same directory, fsyncs
it, renames it over `path` and fsyncs the directory, so a crash leaves the old file or the new one, never a
torn or briefly readable one. A symlinked config is written through to its target.
`warn_if_readable(path, what)` prints one line on stderr, once per file per run, when a file holding a
key can be read by the group or others, with the chmod that fixes it. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

_warned: set[str] = set()


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8), mode 0600, atomically (see the module docstring)."""
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def warn_if_readable(path: Path, what: str) -> None:
    """Warn (one stderr line, once per file per run) when `path`, holding `what`, is group- or world-readable."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if not mode & 0o044 or str(path) in _warned:
        return
    _warned.add(str(path))
    import shlex  # only to word the warning

    sys.stderr.write(f"cb: warning: {path} holds {what} and is readable by others (mode {mode:o}); "
                     f"run: chmod 600 {shlex.quote(str(path))}\n")
