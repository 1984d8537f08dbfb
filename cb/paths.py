"""Every per-user path cb, ulm and agentshell use, computed in one place.

Stdlib only: this is the one module of `cb` that `ulm` and `agentshell` may import (besides
`cb.package_version`, for their --version), and it must stay cheap to import. Paths follow the XDG base
directories; one environment variable, `CB_HOME`, moves all of them under a single directory (tests point it
at a temp dir):

| kind    | with CB_HOME        | otherwise                                         |
|---------|---------------------|---------------------------------------------------|
| config  | $CB_HOME/config     | $XDG_CONFIG_HOME/cb   (~/.config/cb)              |
| state   | $CB_HOME/state      | $XDG_STATE_HOME/cb    (~/.local/state/cb)         |
| cache   | $CB_HOME/cache      | $XDG_CACHE_HOME/cb    (~/.cache/cb)               |
| runtime | $CB_HOME/run        | $XDG_RUNTIME_DIR/cb, else $TMPDIR/cb-<uid>        |

Functions return paths without creating them; `ensure_dir` creates one with the right mode.
The runtime dir (sockets, pid files) is private: 0700, owned by the user.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

APP = "cb"
HOME_ENV = "CB_HOME"


def _home_override() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var, "").strip()
    # The XDG spec says relative paths in these variables are invalid and must be ignored.
    base = Path(value) if value and os.path.isabs(value) else Path.home() / default
    return base / APP


def config_dir() -> Path:
    """User configuration (config.toml, clipboard key)."""
    home = _home_override()
    return home / "config" if home else _xdg("XDG_CONFIG_HOME", ".config")


def state_dir() -> Path:
    """Persistent state: sessions, undo journal, history, agentshell state and logs."""
    home = _home_override()
    return home / "state" if home else _xdg("XDG_STATE_HOME", ".local/state")


def cache_dir() -> Path:
    """Re-creatable data: converted model weights, tokenizers."""
    home = _home_override()
    return home / "cache" if home else _xdg("XDG_CACHE_HOME", ".cache")


def runtime_dir() -> Path:
    """Private per-user dir for sockets and pid files (0700)."""
    home = _home_override()
    if home:
        return home / "run"
    xdg = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP
    return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"


# --- derived paths: build them here, never by hand elsewhere -------------------------------------


def config_file() -> Path:
    """The user config file (TOML)."""
    return config_dir() / "config.toml"


def model_cache_dir() -> Path:
    """Converted checkpoints, keyed by the source file's fingerprint."""
    return cache_dir() / "models"


def sessions_dir() -> Path:
    """One sub-directory per chat session."""
    return state_dir() / "sessions"


def undo_dir() -> Path:
    """The undo journal of applied edit batches."""
    return state_dir() / "undo"


def history_file() -> Path:
    """The REPL's input history."""
    return state_dir() / "history"


def server_dir() -> Path:
    """Pid and log files of the background `ulm serve` that cb starts."""
    return state_dir() / "server"


def agentshell_socket() -> Path:
    """The agentshell daemon's Unix socket."""
    return runtime_dir() / "agentshell.sock"


def agentshell_lock() -> Path:
    """The lock file that keeps a second agentshell daemon from starting."""
    return runtime_dir() / "agentshell.lock"


def agentshell_state_dir() -> Path:
    """Saved tab metadata and per-tab logs of the agentshell daemon."""
    return state_dir() / "agentshell"


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and parents) if missing; a new leaf gets `mode`. Returns `path`."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    return path


def ensure_private_dir(path: Path) -> Path:
    """Create `path` as a 0700 dir owned by this user, refusing one that others could write to.

    Raises PermissionError naming the problem when the dir exists with unsafe ownership or mode.
    """
    ensure_dir(path, 0o700)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})")
    if st.st_mode & 0o077:
        raise PermissionError(f"{path} is accessible to other users (mode {st.st_mode & 0o777:o}); "
                              f"run: chmod 700 {path}")
    return path
