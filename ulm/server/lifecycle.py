"""Running the server: bind, say where, load the model in the background, serve, drain on SIGTERM.

- The socket is bound first (`--port 0` picks a free port) and "listening on http://HOST:PORT" is
  printed at once, so a parent process can read the port and poll /health (503 until the model is ready).
- Binding a non-loopback address without an API key is refused: the server would hand the model to
  anyone on the network.
- SIGTERM / SIGINT: stop accepting connections, let in-flight requests finish for SHUTDOWN_GRACE_S, then
  cut them with finish_reason "length", and exit 0 (uvicorn would re-raise the signal; we don't).
- A model that fails to load ends the process with exit code 1 and the reason on stderr.
- With --log-file, the log (and stdout/stderr after the "listening on" line) go to a file rotated by size
  (logfile.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn

from ulm.engine.backend import Backend
from ulm.server.app import create_app
from ulm.server.defaults import SHUTDOWN_GRACE_S
from ulm.server.logfile import RotatingOutput
from ulm.server.settings import ServeError, Settings, check_settings
from ulm.server.state import ServerState


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, TCP_NODELAY on every connection: asyncio sets it only on sockets whose proto is
    IPPROTO_TCP (socket.create_server leaves it 0), and with Nagle on, a response's last small write waits
    for the client's delayed ACK: 40 ms on every request that follows another on a kept-alive connection,
    and SSE tokens held back in clumps."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":  # Windows' SO_REUSEADDR would let another process take the port over
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
        sock.bind((host, port))
        sock.listen(256)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, draining the engine on SIGTERM/SIGINT and exiting 0 afterwards."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.state.engine is not None:
            self.state.engine.stop(grace=SHUTDOWN_GRACE_S, timeout=None)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def _configure_logging(settings: Settings) -> None:
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if settings.log_file:
        handler = RotatingOutput(settings.log_file, settings.log_max_bytes, settings.log_backups)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S"))
    for name in ("ulm.server", "ulm.engine"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("ulm.server.access").setLevel(logging.INFO)


def serve(settings: Settings, load_backend: Callable[[], Backend] | None = None,
          echo: Callable[[str], None] = print) -> int:
    """Run until SIGTERM/SIGINT; the exit code (0, or 1 when the model failed to load)."""
    check_settings(settings)
    state = ServerState(settings, load_backend)
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    # http and loop "auto": httptools and uvloop where installed (they are ulm's dependencies), else h11 and asyncio
    config = uvicorn.Config(create_app(state), http="auto", loop="auto", lifespan="on", access_log=False,
                            log_config=None, log_level="warning",
                            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S) + 1, timeout_keep_alive=5)
    server = _Server(config, state)
    failed: list[str] = []

    def on_load_failure(why: str) -> None:
        failed.append(why)
        server.should_exit = True

    state.on_load_failure = on_load_failure
    echo(f"ulm serve: listening on http://{host}:{port} (model loading; GET /health says when it is ready)")
    sys.stdout.flush()
    _configure_logging(settings)
    server.run(sockets=[sock])
    if failed:
        print(f"ulm serve: error: the model failed to load: {failed[0]}", file=sys.stderr)
        return 1
    return 0
