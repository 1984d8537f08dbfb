"""The local model server cb manages: `ulm serve` started on first use as a detached background process.

    cb.paths.server_dir()/server.json   {"pid", "port", "model", "base_url", "started", "log", "server_args"}
    cb.paths.server_dir()/server.log    the server's log, stdout and stderr, rotated by `ulm serve --log-file`
                                        at 10 MB with 3 backups (server.log.1 … .3)
    cb.paths.server_dir()/lock          held while starting, so two cb processes never start two servers

`ensure()` reuses a running healthy server of the same identity (model and server_args), else stops the one
running (another model, other arguments such as `--mode`) and starts one in its own session (it outlives
the cb that started it), waits for GET /health with a spinner (showing the load's step and fraction while
the server reports one), and returns its base URL. A server that dies
or never becomes healthy gives a `ServerError` with one line saying why and where the log is. `stop()`
sends SIGTERM to the server's process group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeAlias

from cb import paths
from cb.backend import Backend

# `wait(text)`: shown while cb waits for the server (a spinner); it yields a function that changes the text
Wait: TypeAlias = Callable[[str], contextlib.AbstractContextManager[Callable[[str], None]]]

STOP_GRACE_S = 10.0


class ServerError(RuntimeError):
    """The local server could not be started or reached; str() is one line for the user."""


@dataclass
class ServerInfo:
    pid: int
    port: int
    model: str
    base_url: str
    started: float
    log: str
    server_args: str | None = None  # None: recorded by a cb that did not keep them (never the same identity)

    def serves(self, model: str, extra_args: str) -> bool:
        """Whether this server was started for `model` with these `ulm serve` arguments."""
        return (self.model == model and self.server_args is not None
                and shlex.split(self.server_args) == shlex.split(extra_args))


def info_file() -> Path:
    return paths.server_dir() / "server.json"


def log_file() -> Path:
    return paths.server_dir() / "server.log"


def read_info() -> ServerInfo | None:
    """The recorded server, if its record exists and its process is still ours and alive."""
    try:
        data = json.loads(info_file().read_text(encoding="utf-8"))
        info = ServerInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    return info if _is_our_server(info.pid) else None


def _is_our_server(pid: int) -> bool:
    """Whether `pid` is alive and runs `ulm … serve` (guards against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    return "serve" in args and any(a.endswith("ulm") or a == "ulm" for a in args)


def probe(base_url: str, timeout: float = 2.0) -> tuple[str, str]:
    """GET <root>/health → ("ok" | "loading" | "error" | "down", the server's error message if any)."""
    with Backend(base_url, timeout=timeout) as backend:
        return backend.probe(timeout)


def healthy(base_url: str, timeout: float = 2.0) -> bool:
    """GET <root>/health answers 200."""
    return probe(base_url, timeout)[0] == "ok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(n: int = 1) -> str:
    """The last `n` non-empty lines of the server log, joined by " | "."""
    try:
        lines = [x.strip() for x in log_file().read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [x for x in lines if x]
    return " | ".join(lines[-n:])


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    paths.ensure_dir(paths.server_dir())
    with open(paths.server_dir() / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def serve_command(model: str, port: int, extra_args: str) -> list[str]:
    """The command line that runs `ulm serve` with this Python."""
    return [sys.executable, "-m", "ulm", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
            "--log-file", str(log_file()), *shlex.split(extra_args)]


def ensure(model: str, port: int = 0, extra_args: str = "", timeout: float = 180.0,
           wait: Wait | None = None) -> ServerInfo:
    """A healthy local server for `model`: the running one, or a new one (see the module docstring)."""
    with _lock():
        info = read_info()
        if info and info.serves(model, extra_args):
            # alive but not healthy yet (another cb is starting it, or it is loading): wait for it
            return info if healthy(info.base_url) else _wait_healthy(info, timeout, wait)
        if info:
            _stop(info)  # another model, or other arguments (a changed --mode)
        return _start(model, port, extra_args, timeout, wait)


def _start(model: str, port: int, extra_args: str, timeout: float,
           wait: Wait | None) -> ServerInfo:
    if importlib.util.find_spec("torch") is None:
        raise ServerError("the local model server needs the model extra: pip install 'cb[ulm]' "
                          "(or point cb at another server: cb config set base_url URL)")
    port = port or _free_port()
    log = log_file()
    paths.ensure_dir(log.parent)
    with log.open("ab") as out:
        out.write(f"\n--- cb starting ulm serve at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        out.flush()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(serve_command(model, port, extra_args), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env, close_fds=True)
    info = ServerInfo(proc.pid, port, model, f"http://127.0.0.1:{port}/v1", time.time(), str(log), extra_args)
    tmp = info_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info)), encoding="utf-8")
    os.replace(tmp, info_file())
    return _wait_healthy(info, timeout, wait, proc)


def _wait_healthy(info: ServerInfo, timeout: float,
                  wait: Wait | None, proc: subprocess.Popen[bytes] | None = None) -> ServerInfo:
    deadline = time.monotonic() + timeout
    label = f"starting the model server ({info.model})…"
    waiting = wait(label) if wait else contextlib.nullcontext(lambda _: None)
    with waiting as show:
        delay, shown = 0.05, ""
        while time.monotonic() < deadline:
            state, said = probe(info.base_url, timeout=1.0)
            if state == "ok":
                return info
            if state == "error":
                _stop(info)
                raise ServerError(f"the model server failed to start ({said or 'no reason given'}); "
                                  f"log: {info.log}")
            if state == "loading" and said != shown:  # the load's step: "repacking … 42% (470/1117 MB)"
                show(f"{label} {said}" if said else label)
                shown = said
            exited = proc.poll() is not None if proc else not _is_our_server(info.pid)
            if exited:
                info_file().unlink(missing_ok=True)
                tail = _log_tail(1)
                raise ServerError(f"the model server exited during start-up ({tail or 'no output'}); "
                                  f"log: {info.log}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
    _stop(info)
    raise ServerError(f"the model server did not become healthy within {timeout:g}s (stopped it; raise "
                      f"server_start_timeout for a big model); log: {info.log}")


def _stop(info: ServerInfo) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and _is_our_server(info.pid):
        time.sleep(0.05)
    if _is_our_server(info.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(info.pid, signal.SIGKILL)
    info_file().unlink(missing_ok=True)


def stop() -> ServerInfo | None:
    """Stop the recorded server; return what was stopped (None when none was running)."""
    with _lock():
        info = read_info()
        if info is None:
            info_file().unlink(missing_ok=True)
            return None
        _stop(info)
        return info
