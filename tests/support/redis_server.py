"""A real `redis-server` for tests, and a TCP fault proxy to put between a client and it.

`RedisServer` runs redis-server on a random loopback port in a temp dir (no persistence), with two
ACL users: `clip_pub` may PUBLISH to the clipboard channel and XADD to its stream; `clip_sub` may
SUBSCRIBE, PING and XREVRANGE. The default user (no password) is the test's admin (CLIENT KILL,
CONFIG SET). `restart()` stops it and starts it again on the same port, optionally after a pause. With `tls_dir`
(see `make_tls_files`) it serves TLS only on that port.

`FaultProxy` forwards 127.0.0.1:<proxy port> to a target port, and on demand: `kill()` closes every
open connection (FIN), `reset()` aborts them (RST), `blackhole()` keeps them open but drops all bytes
both ways (a half-open link: writes succeed, nothing ever comes back), `refuse()` closes every new
connection at once (the server looks down), `heal()` forwards again.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.processes import stop_process

PUB_USER, PUB_PASS = "clip_pub", "pub-secret-7f3a"
SUB_USER, SUB_PASS = "clip_sub", "sub-secret-91c4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll `cond` until it is true or `timeout_s` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cond():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


class RedisServer:
    """One redis-server process with the clipboard ACL users; `url(user)` gives a client URL."""

    def __init__(self, workdir: Path, channel: str = "clipboard", stream: str = "clipboard:stream",
                 tls_dir: Path | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (make test installs it: SYSTEM_PACKAGES)")
        self.workdir = workdir
        self.channel, self.stream = channel, stream
        self.port = free_port()
        self.tls_dir = tls_dir  # holds ca.pem, server.pem, server.key (see make_tls_files): TLS only
        self.proc: subprocess.Popen[bytes] | None = None

    def _args(self) -> list[str]:
        pub = f"{PUB_USER} on >{PUB_PASS} resetchannels &{self.channel} resetkeys ~{self.stream} -@all +publish +xadd"
        sub = (f"{SUB_USER} on >{SUB_PASS} resetchannels &{self.channel} resetkeys ~{self.stream} -@all "
               "+subscribe +unsubscribe +ping +xrevrange")
        if self.tls_dir is None:
            ports = ["--port", str(self.port)]
        else:
            t = self.tls_dir
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(t / "server.pem"),
                     "--tls-key-file", str(t / "server.key"), "--tls-ca-cert-file", str(t / "ca.pem"),
                     "--tls-auth-clients", "no"]
        return ["redis-server", *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log"),
                "--user", *pub.split(), "--user", *sub.split()]

    def start(self) -> RedisServer:
        """Start (a taken port is retried on another, except that `restart` keeps its port when free)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.proc = proc
            wait_until(lambda p=proc: p.poll() is not None or self._answers(), 10)
            if proc.poll() is None and self._answers():
                return self
            self._kill()
            self.port = free_port()
        raise RuntimeError(f"redis-server did not start; see {self.workdir / 'redis.log'}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                s = raw
                if self.tls_dir is not None:
                    ctx = ssl.create_default_context(cafile=str(self.tls_dir / "ca.pem"))
                    s = ctx.wrap_socket(raw, server_hostname="localhost")
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _kill(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def stop(self) -> None:
        """SIGTERM and wait (the port is free afterwards)."""
        self._kill()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down `down_s`, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def url(self, user: str | None = None, password: str | None = None, port: int | None = None) -> str:
        port = port or self.port
        if user is None:
            return f"redis://127.0.0.1:{port}/0"
        return f"redis://{user}:{password}@127.0.0.1:{port}/0"

    def admin(self):  # -> redis.Redis
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


class FaultProxy:
    """A one-thread TCP forwarder with kill / reset / blackhole / heal faults."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.peers: dict[socket.socket, socket.socket] = {}
        self.blackholed = False
        self.refusing = False
        self.accepted = 0
        self._commands: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fault-proxy", daemon=True)
        self._thread.start()

    # --- faults, run inside the loop thread ------------------------------------------------------------

    def _do(self, command: str) -> None:
        done = threading.Event()
        self._commands.put((command, done))
        if not done.wait(5):
            raise RuntimeError(f"fault proxy did not run {command}")

    def kill(self) -> None:
        """Close every open connection cleanly (FIN)."""
        self._do("kill")

    def reset(self) -> None:
        """Abort every open connection (RST)."""
        self._do("reset")

    def blackhole(self) -> None:
        """Keep connections open but forward nothing, either way (half-open)."""
        self._do("blackhole")

    def refuse(self) -> None:
        """Close each new connection as soon as it is accepted."""
        self._do("refuse")

    def heal(self) -> None:
        """Forward again (connections broken meanwhile stay broken)."""
        self._do("heal")

    def close(self) -> None:
        self._do("kill")
        self._stop.set()
        self._thread.join(5)
        self.listener.close()

    # --- the loop ---------------------------------------------------------------------------------------

    def _drop(self, sock: socket.socket, rst: bool = False) -> None:
        peer = self.peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self.peers.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(s)
            if rst:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                s.close()

    def _run_command(self, command: str) -> None:
        if command in ("kill", "reset"):
            for sock in list(self.peers):
                if sock in self.peers:
                    self._drop(sock, rst=command == "reset")
        elif command == "blackhole":
            self.blackholed = True
        elif command == "refuse":
            self.refusing = True
        elif command == "heal":
            self.blackholed = self.refusing = False

    def _loop(self) -> None:
        while not self._stop.is_set():
            while not self._commands.empty():
                command, done = self._commands.get()
                self._run_command(command)
                done.set()
            for key, _ in self.sel.select(0.02):
                sock = key.fileobj
                if sock is self.listener:
                    self._accept()
                    continue
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)  # type: ignore[arg-type]
                elif not self.blackholed and sock in self.peers:
                    try:
                        self.peers[sock].sendall(data)  # type: ignore[index]
                    except OSError:
                        self._drop(sock)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        if self.refusing:
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            client.close()
            return
        self.accepted += 1
        for s in (client, upstream):
            s.setblocking(True)
            s.settimeout(5)
            self.sel.register(s, selectors.EVENT_READ)
        self.peers[client], self.peers[upstream] = upstream, client


def make_tls_files(directory: Path, host: str = "localhost") -> Path:
    """A throw-away CA and a server certificate for `host` (DNS name only) made with openssl: ca.pem,
    server.pem, server.key in `directory`, which is returned."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cb test CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={host}")
    (directory / "san.ext").write_text(f"subjectAltName=DNS:{host}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return directory
