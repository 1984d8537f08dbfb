"""The daemon: start-up safety (private runtime dir, lock, stale socket), the asyncio server with a peer-uid
check and hello on every connection, the SIGCHLD reaper, state saving, and an orderly shutdown.

Start-up order: refuse an unsafe runtime dir -> take the lock (a second daemon stops here, before touching the
socket) -> restore state (running tabs become `lost`, their leftovers are killed) -> remove a stale socket ->
bind under umask 077 (socket 0600) -> listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentshell import protocol as p
from agentshell.daemon import handlers, procs, state
from agentshell.daemon.escapes import RelayFilter
from agentshell.daemon.logfile import RotatingLog
from agentshell.daemon.tab import Tab, log_path
from agentshell.sockpath import socket_address
from cb import paths

log = logging.getLogger("agentshell")
MAX_CLIENT_BUFFER = 4 << 20  # a client that lets more than this pile up unread is dropped
DRAIN_TIMEOUT = 10.0
SAVE_INTERVAL = 2.0
SAVE_DELAY = 0.25
SERVER_NAME = "agentshell"


@dataclass
class Settings:
    ring_cap: int = 8 << 20
    log_max_bytes: int = 8 << 20
    log_backups: int = 2
    stop_timeout: float = 5.0
    handshake_timeout: float = 10.0


class StartError(Exception):
    """The daemon cannot start (unsafe dir, already running, bind failed); the message is for the user."""


class Connection:
    """One client connection: framed reads, bounded writes, at most one attach stream."""

    def __init__(self, daemon: Daemon, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.daemon = daemon
        self.reader = reader
        self.writer = writer
        self.closed = False
        self.current_request = 0
        self.attached: tuple[Tab, int, Any] | None = None

    def send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.writer.transport.get_write_buffer_size() > MAX_CLIENT_BUFFER:
            log.warning("dropping a client that stopped reading (%d bytes unread)",
                        self.writer.transport.get_write_buffer_size())
            self.abort()
            return
        self.writer.write(p.encode_frame(frame))

    async def answer(self, frame: dict[str, Any]) -> None:
        self.send(frame)
        if self.closed or not self.writer.transport.get_write_buffer_size():
            return  # all sent already: no drain (and no wait_for task) needed
        try:
            await asyncio.wait_for(self.writer.drain(), DRAIN_TIMEOUT)
        except (TimeoutError, ConnectionError, OSError):
            self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.stop_attach()
            self.writer.transport.abort()

    async def read_frame(self) -> dict[str, Any]:
        header = await self.reader.readexactly(p.HEADER.size)
        length = p.frame_length(header, p.MAX_REQUEST_FRAME)
        return p.decode_body(await self.reader.readexactly(length))

    def start_attach(self, tab: Tab, request_id: int) -> None:
        self.stop_attach()
        relay = RelayFilter()

        def push(data: bytes | None) -> None:
            if data is None:
                self.send(p.event_frame(request_id, "exit", tab=self.daemon.info(tab).to_wire()))
                self.stop_attach()
                return
            safe = relay.feed(data)
            if safe:
                self.send(p.event_frame(request_id, "output", data_b64=p.b64(safe)))

        tab.subscribers.add(push)
        self.attached = (tab, request_id, push)
        if tab.finished.is_set():  # nothing more will come: say so right after the answer
            asyncio.get_running_loop().call_soon(push, None)

    def stop_attach(self) -> None:
        if self.attached is not None:
            tab, _, push = self.attached
            tab.subscribers.discard(push)
            self.attached = None


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_timeout = settings.stop_timeout
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.home = Path.home()
        self.tabs: dict[int, Tab] = {}
        self.next_id = 1
        self.state_dir = paths.agentshell_state_dir()
        self.state_file = self.state_dir / "state.json"
        self.socket_path = paths.agentshell_socket()
        self.lock_path = paths.agentshell_lock()
        self._lock_fd: int | None = None
        self._socket_ino: int | None = None
        self._dirty = False
        self._stopping: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[Connection] = set()

    # --- start-up -------------------------------------------------------------------------------------------

    def prepare(self) -> socket.socket:
        """Everything before the event loop: dirs, lock, restore, socket. Raises StartError."""
        try:
            runtime = paths.ensure_private_dir(paths.runtime_dir())
            paths.ensure_private_dir(self.state_dir)
            paths.ensure_dir(self.state_dir / "logs")
        except PermissionError as e:
            raise StartError(f"refusing to start: {e}") from None
        log.info("runtime dir %s", runtime)
        self._take_lock()
        self._restore()
        return self._bind()

    def _take_lock(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartError(f"agentshell is already running (pid {other}); socket {self.socket_path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _restore(self) -> None:
        saved, problem = state.load(self.state_file)
        if problem:
            log.warning("%s", problem)
        self.next_id = saved.next_id
        for record in saved.tabs:
            if state.mark_lost(record):
                killed = procs.kill_leftovers(record.token, record.created)
                log.info("tab %d was running when the daemon stopped: now lost (%d leftover processes killed)",
                         record.id, killed)
            tab = self._make_tab(record)
            refill = tab.log.read_tail(min(self.settings.ring_cap, 1 << 20))
            tab.ring.start = max(record.end_offset - len(refill), 0)
            tab.ring.buf = bytearray(refill)
            self.tabs[record.id] = tab
        self.save()

    def _bind(self) -> socket.socket:
        if self.socket_path.exists() or self.socket_path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address, dir_fd = socket_address(self.socket_path)
            try:
                probe.connect(address)
                raise StartError(f"another agentshell answers on {self.socket_path}")
            except (ConnectionRefusedError, FileNotFoundError):
                log.info("removing stale socket %s", self.socket_path)
                self.socket_path.unlink(missing_ok=True)
            finally:
                probe.close()
                if dir_fd is not None:
                    os.close(dir_fd)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address, dir_fd = socket_address(self.socket_path)
        old_umask = os.umask(0o177)
        try:
            sock.bind(address)
        except OSError as e:
            sock.close()
            raise StartError(f"error creating {self.socket_path}: {e.strerror}") from None
        finally:
            os.umask(old_umask)
            if dir_fd is not None:
                os.close(dir_fd)
        os.chmod(self.socket_path, 0o600)
        self._socket_ino = self.socket_path.stat().st_ino
        sock.listen(512)
        sock.setblocking(False)
        return sock

    # --- running ---------------------------------------------------------------------------------------------

    async def run(self, sock: socket.socket, ready: Any = None) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        procs.become_subreaper()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the ssh session going away is no reason to stop
        self._reap()
        self._server = await asyncio.start_unix_server(self._serve_client, sock=sock, limit=p.MAX_REQUEST_FRAME)
        saver = asyncio.create_task(self._save_periodically())
        log.info("agentshell %d listening on %s", self.pid, self.socket_path)
        if ready is not None:
            ready()
        await self._stopping.wait()
        saver.cancel()
        await self._shutdown()

    def request_shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def _shutdown(self) -> None:
        log.info("shutting down: ending %d running tabs", sum(t.running for t in self.tabs.values()))
        assert self._server is not None
        self._server.close()
        await asyncio.gather(*(t.terminate(self.stop_timeout) for t in self.tabs.values()
                               if not t.finished.is_set()))
        for conn in list(self._connections):
            conn.abort()
        for tab in self.tabs.values():
            tab.close_handles()
        self.save()
        self._remove_socket()
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
        log.info("stopped")

    def _remove_socket(self) -> None:
        with contextlib.suppress(OSError):
            if self.socket_path.stat().st_ino == self._socket_ino:
                self.socket_path.unlink()

    def _reap(self) -> None:
        """Collect every exited child (tab leaders and adopted orphans) so none stays a zombie."""
        by_pid = {t.record.pid: t for t in self.tabs.values() if t.record.pid and not t.reaped}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            tab = by_pid.get(pid)
            if tab is not None:
                tab.on_reaped(status)

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            if self._dirty:
                self.save()
            for tab in self.tabs.values():
                tab.log.flush()

    # --- connections -----------------------------------------------------------------------------------------

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            if not self._peer_allowed(writer):
                return
            if not await self._handshake(conn):
                return
            while not conn.closed:
                try:
                    message = await conn.read_frame()
                except p.ProtocolError as e:
                    await conn.answer(p.error_frame(None, e.code, str(e)))
                    return
                await self._dispatch(conn, message)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:  # the daemon is stopping; end this connection quietly
            pass
        finally:
            self._connections.discard(conn)
            conn.stop_attach()
            conn.closed = True
            writer.transport.abort()

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        if uid == os.getuid():
            return True
        log.warning("access denied uid=%d pid=%d", uid, pid)
        return False

    async def _handshake(self, conn: Connection) -> bool:
        try:
            message = await asyncio.wait_for(conn.read_frame(), self.settings.handshake_timeout)
            request_id, request = p.parse_request(message)
        except TimeoutError:
            return False
        except p.AgentshellError as e:
            await conn.answer(p.error_frame(None, p.ErrorCode.VERSION, f"expected hello first ({e})"))
            return False
        if not isinstance(request, p.Hello) or request.version != p.PROTOCOL_VERSION:
            got = request.version if isinstance(request, p.Hello) else request.OP
            await conn.answer(p.error_frame(request_id, p.ErrorCode.VERSION,
                                            f"protocol version {p.PROTOCOL_VERSION} expected, got {got}; "
                                            f"restart the daemon (agentshell shutdown) after an upgrade"))
            return False
        await conn.answer(p.ok_frame(request_id, {"version": p.PROTOCOL_VERSION, "server": SERVER_NAME,
                                                  "pid": self.pid}))
        return True

    async def _dispatch(self, conn: Connection, message: dict[str, Any]) -> None:
        raw_id = message.get("id")
        request_id = raw_id if isinstance(raw_id, int) else None
        try:
            request_id, request = p.parse_request(message)
            conn.current_request = request_id
            result = await handlers.HANDLERS[type(request)](self, conn, request)
            frame = p.ok_frame(request_id, result)
        except p.AgentshellError as e:
            frame = p.error_frame(request_id, e.code, str(e))
        except Exception as e:  # a bug must cost one request, not the daemon
            log.exception("internal error in %s", message.get("op"))
            frame = p.error_frame(request_id, p.ErrorCode.INTERNAL, f"internal error: {e}")
        await conn.answer(frame)

    # --- tabs ------------------------------------------------------------------------------------------------

    def _make_tab(self, record: state.TabRecord) -> Tab:
        log_file = RotatingLog(log_path(self.state_dir, record.id), self.settings.log_max_bytes,
                               self.settings.log_backups)
        tab = Tab(record, self.settings.ring_cap, log_file)
        tab.on_finish = self._on_tab_finished
        return tab

    def spawn(self, argv: list[str] | None, *, name: str, cwd: str, env: dict[str, str], cols: int,
              rows: int) -> Tab:
        if name:
            self.check_name(name)
        tab_env = {**os.environ, **env}
        argv = argv or [_user_shell(tab_env)]
        tab_env.setdefault("TERM", "xterm-256color")
        if tab_env.get("TERM") in ("", "dumb"):
            tab_env["TERM"] = "xterm-256color"
        record = state.TabRecord(id=self.next_id, name=name, argv=list(argv), cwd=cwd,
                                 token=secrets.token_hex(8), created=time.time(), cols=cols, rows=rows)
        tab_env[procs.TOKEN_VAR] = record.token
        tab_env[procs.TAB_ID_VAR] = str(record.id)
        tab = self._make_tab(record)
        tab.spawn(tab_env, asyncio.get_running_loop())
        self.next_id += 1
        self.tabs[record.id] = tab
        self.save_now()
        log.info("tab %d started: pid %s %s", record.id, record.pid, argv)
        return tab

    def _on_tab_finished(self, tab: Tab) -> None:
        rec = tab.record
        log.info("tab %d %s (code %s, signal %s)", rec.id, rec.status, rec.exit_code, rec.exit_signal)
        self.save_now()

    def find(self, ref: str) -> Tab:
        text = ref.strip()
        if text.isdigit():
            tab = self.tabs.get(int(text))
            if tab is None:
                raise p.NoSuchTab(f"no tab {text}")
            return tab
        for tab in self.tabs.values():
            if tab.record.name == text:
                return tab
        raise p.NoSuchTab(f"no tab named {text!r}")

    def check_name(self, name: str, exclude: Tab | None = None) -> None:
        if not name or name.isdigit() or any(ch.isspace() or not ch.isprintable() for ch in name):
            raise p.BadRequest(f"bad tab name {name!r}: use letters, digits and punctuation, not only digits")
        for tab in self.tabs.values():
            if tab is not exclude and tab.record.name == name:
                raise p.AgentshellError(f"a tab is already named {name!r}", p.ErrorCode.NAME_TAKEN)

    def remove(self, tab: Tab) -> None:
        tab.close_handles()
        tab.log.remove()
        self.tabs.pop(tab.record.id, None)
        self.save_now()

    def info(self, tab: Tab) -> p.TabInfo:
        rec = tab.record
        return p.TabInfo(id=rec.id, name=rec.name, argv=rec.argv, cwd=rec.cwd, status=rec.status, pid=rec.pid,
                         exit_code=rec.exit_code, exit_signal=rec.exit_signal, created=rec.created, ended=rec.ended,
                         cols=rec.cols, rows=rec.rows, end_offset=tab.ring.end, kept_bytes=len(tab.ring.buf),
                         dropped_bytes=tab.ring.dropped)

    # --- state -----------------------------------------------------------------------------------------------

    def mark_dirty(self) -> None:
        """Save soon: within SAVE_DELAY, however many changes come meanwhile (a burst of 400 new tabs costs a
        few saves, not 400)."""
        if not self._dirty:
            self._dirty = True
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(SAVE_DELAY, self._save_if_dirty)

    def save_now(self) -> None:
        """Save at once (a started tab's marker must be on disk before a crash could orphan it), without
        fsync; the durable save follows within SAVE_DELAY."""
        self.save(durable=False)
        self.mark_dirty()

    def _save_if_dirty(self) -> None:
        if self._dirty:
            self.save()

    def save(self, durable: bool = True) -> None:
        if durable:  # a quick save still owes the durable one
            self._dirty = False
        saved = state.SavedState(self.next_id, [t.record for t in sorted(self.tabs.values(),
                                                                        key=lambda t: t.record.id)])
        try:
            state.save(self.state_file, saved, durable)
        except OSError as e:
            log.error("could not save state to %s: %s", self.state_file, e)


def _user_shell(env: dict[str, str]) -> str:
    shell = env.get("SHELL", "")
    return shell if os.path.isabs(shell) and os.access(shell, os.X_OK) else "/bin/sh"


def raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(settings: Settings, ready: Any = None) -> None:
    """Run the daemon in this process until SIGTERM/SIGINT or a shutdown request. Raises StartError."""
    raise_fd_limit()
    daemon = Daemon(settings)
    sock = daemon.prepare()
    asyncio.run(daemon.run(sock, ready))
