"""Starting the daemon: in the foreground (logging to stderr) or in the background (double fork, new session,
stdio to the daemon log, the parent waiting on a pipe until the daemon listens or fails)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from agentshell.daemon.server import Settings, StartError, serve
from cb import paths

LOG_ROTATE_BYTES = 1 << 20


def daemon_log():
    return paths.agentshell_state_dir() / "daemon.log"


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s agentshell[%(process)d] %(levelname)s %(message)s")


def main(settings: Settings, background: bool) -> int:
    """Exit code: 0 after a clean stop (foreground) or once the background daemon listens; 1 if it cannot start."""
    if not background:
        _setup_logging()
        try:
            serve(settings)
        except StartError as e:
            print(f"agentshell: {e}", file=sys.stderr)
            return 1
        return 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as r:
            message = r.read().decode(errors="replace").strip()
        os.waitpid(pid, 0)
        if message == "ok":
            return 0
        print(f"agentshell: {message or 'the daemon died while starting; see ' + str(daemon_log())}", file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    _redirect_stdio()
    _setup_logging()

    def ready() -> None:
        os.write(write_end, b"ok")
        os.close(write_end)

    code = 0
    try:
        serve(settings, ready)
    except StartError as e:
        logging.getLogger("agentshell").error("%s", e)
        with contextlib.suppress(OSError):
            os.write(write_end, str(e).encode())
        code = 1
    except BaseException as e:
        logging.getLogger("agentshell").exception("daemon crashed")
        with contextlib.suppress(OSError):
            os.write(write_end, f"daemon crashed: {e}".encode())
        code = 1
    os._exit(code)


def _redirect_stdio() -> None:
    log_file = daemon_log()
    paths.ensure_dir(log_file.parent)
    with contextlib.suppress(OSError):
        if log_file.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_file, log_file.with_name(log_file.name + ".1"))
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)
    os.chdir("/")
