"""Unix socket addresses that fit: sun_path holds ~107 bytes, deep temp dirs (pytest's) can be longer.

A path over the limit is reached through its directory's fd instead: `/proc/self/fd/<dirfd>/<name>`, which
Linux resolves for both bind and connect. The caller keeps the returned fd open while it binds/connects.
"""

from __future__ import annotations

import os
from pathlib import Path

SUN_PATH_MAX = 107


def socket_address(path: Path) -> tuple[str, int | None]:
    """(address to bind/connect, dir fd to close afterwards or None)."""
    if len(os.fsencode(str(path))) <= SUN_PATH_MAX:
        return str(path), None
    dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dir_fd}/{path.name}", dir_fd
