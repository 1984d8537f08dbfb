"""One tab: a process on a PTY in its own session and process group, and its captured output.

Live handles (the PTY master, the event-loop reader, waiters, attach subscribers) live here; everything
persisted lives in the `TabRecord`. Output flows: PTY master -> StringCap (discard oversized control
strings) -> ring (byte cap) + rotating log -> waiters and attach subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import struct
import termios
import time
from collections.abc import Callable
from pathlib import Path

from agentshell import protocol as p
from agentshell.daemon import procs
from agentshell.daemon.escapes import StringCap
from agentshell.daemon.logfile import RotatingLog
from agentshell.daemon.ring import Ring
from agentshell.daemon.state import TabRecord

READ_CHUNK = 64 << 10
READS_PER_WAKEUP = 16
EOF_GRACE = 0.5  # after the leader is reaped, how long to wait for the PTY's last output before finishing
_RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE, signal.SIGQUIT,
                  signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGXFSZ)


class Tab:
    def __init__(self, record: TabRecord, ring_cap: int, log: RotatingLog) -> None:
        self.record = record
        self.ring = Ring(ring_cap, start=record.end_offset)
        self.log = log
        self.cap = StringCap()
        self.master: int | None = None
        self.reaped = False
        self.eof = False
        self.killing = False
        self.paste_mode = False  # the program asked for bracketed paste (ESC[?2004h)
        self.last_output = time.monotonic()
        self.changed: set[asyncio.Event] = set()  # one event per waiter, set on output and on exit
        self.subscribers: set[Callable[[bytes | None], None]] = set()  # attach streams; None = tab finished
        self.finished = asyncio.Event()
        self.on_finish: Callable[[Tab], None] = lambda tab: None
        if record.status != p.RUNNING:
            self.finished.set()

    # --- start -------------------------------------------------------------------------------------------------

    def spawn(self, env: dict[str, str], loop: asyncio.AbstractEventLoop) -> None:
        """Fork the tab's process on a new PTY. Raises SpawnFailed for a bad command or cwd."""
        rec = self.record
        if not os.path.isdir(rec.cwd):
            raise p.SpawnFailed(f"no such directory: {rec.cwd}")
        program = rec.argv[0]
        if shutil.which(program, path=env.get("PATH", os.defpath)) is None and not (
                "/" in program and os.access(program, os.X_OK)):
            raise p.SpawnFailed(f"command not found: {program}")
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rec.rows, rec.cols, 0, 0))
        status_r, status_w = os.pipe()  # close-on-exec: EOF = the child exec'd, in its own session by then
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = os.fork()
            if pid == 0:
                _child_exec(slave, master, status_w, rec.argv, rec.cwd, env)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(status_w)
        with os.fdopen(status_r, "rb") as status:
            failure = status.read()
        if failure:
            os.close(slave)
            os.close(master)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise p.SpawnFailed(f"cannot run {program}: {failure.decode(errors='replace')}")
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        rec.pid = pid
        loop.add_reader(master, self._on_readable)

    # --- output ------------------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        """Read what the PTY holds now (a few reads of ~4 KiB each, as Linux PTYs hand them out) and capture
        it in one go; EIO or an empty read is the end of the stream."""
        assert self.master is not None
        chunks = []
        eof = False
        for _ in range(READS_PER_WAKEUP):
            try:
                data = os.read(self.master, READ_CHUNK)
            except BlockingIOError:
                break
            except OSError:  # EIO: the last slave fd closed (any other error ends the stream too)
                data = b""
            if not data:
                eof = True
                break
            chunks.append(data)
        if chunks:
            self.capture(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if eof:
            self._on_eof()

    def capture(self, data: bytes) -> None:
        data = self.cap.feed(data)
        if not data:
            return
        self.ring.append(data)
        self.log.write(data)
        self.record.end_offset = self.ring.end
        self.last_output = time.monotonic()
        if b"?2004" in data:
            on, off = data.rfind(b"\x1b[?2004h"), data.rfind(b"\x1b[?2004l")
            if on != off:
                self.paste_mode = on > off
        for event in self.changed:
            event.set()
        for push in list(self.subscribers):
            push(data)

    def _on_eof(self) -> None:
        self.eof = True
        self._close_master()
        self._maybe_finish()
        if self.finished.is_set():
            self.log.close()

    def _close_master(self) -> None:
        if self.master is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.master)
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None

    def drain(self) -> None:
        """Read whatever the PTY still holds (after the leader exits)."""
        while self.master is not None:
            try:
                data = os.read(self.master, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._on_eof()
                return
            self.capture(data)

    # --- exit --------------------------------------------------------------------------------------------------

    def on_reaped(self, status: int) -> None:
        """The leader's wait status arrived (from the daemon's SIGCHLD reaper)."""
        rec = self.record
        self.reaped = True
        if os.WIFEXITED(status):
            rec.exit_code = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            rec.exit_signal = os.WTERMSIG(status)
        rec.ended = time.time()
        self.drain()
        if not self.eof:
            asyncio.get_running_loop().call_later(EOF_GRACE, self._grace_over)
        self._maybe_finish()

    def _grace_over(self) -> None:
        self.drain()
        self._finish()

    def _maybe_finish(self) -> None:
        if self.reaped and self.eof:
            self._finish()

    def _finish(self) -> None:
        if self.finished.is_set():
            return
        rec = self.record
        if rec.status == p.RUNNING:
            rec.status = p.KILLED if self.killing else p.EXITED
        self.log.close()  # reopened if leftovers still print; closed again at EOF
        self.finished.set()
        for event in self.changed:
            event.set()
        for push in list(self.subscribers):
            push(None)
        self.on_finish(self)

    @property
    def running(self) -> bool:
        return self.record.status == p.RUNNING and not self.reaped

    # --- control -----------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> int:
        """Write input to the PTY; returns bytes written. Input beyond what the PTY takes now is refused
        rather than buffered without bound (the caller reports the short count)."""
        if self.master is None or not self.running:
            raise p.TabNotRunning(f"tab {self.record.id} is not running")
        written = 0
        while written < len(data):
            try:
                written += os.write(self.master, data[written:])
            except BlockingIOError:
                break
            except OSError as e:
                raise p.TabNotRunning(f"tab {self.record.id} does not take input ({e.strerror})") from None
        return written

    def resize(self, cols: int, rows: int) -> None:
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.record.cols, self.record.rows = cols, rows

    def signal(self, sig: int) -> None:
        if not self.running or self.record.pid is None:
            raise p.TabNotRunning(f"tab {self.record.id} is not running")
        procs.signal_group(self.record.pid, sig)

    async def terminate(self, stop_timeout: float) -> None:
        """End the whole process group: HUP + TERM, then KILL after `stop_timeout`; also processes that left
        the group but carry the tab's token (for a tab that already ended: the leftovers it started).
        Returns once the tab has finished.

        The group is signalled by number only while its leader is unreaped, or while a member still carries
        the tab's token: a reused process-group number is never signalled."""
        rec = self.record
        if not self.finished.is_set():
            self.killing = True
        elif not procs.processes_with_token(rec.token, rec.created):
            return  # ended, and nothing it started is left
        group = rec.pid if rec.pid and (not self.reaped or procs.group_is_tabs(rec.pid, rec.token, rec.created)) \
            else None
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGCONT):
            if group is not None:
                procs.signal_group(group, sig)
        if group is None:
            procs.signal_marked(rec.token, rec.created, signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout
        while time.monotonic() < deadline:
            if group is not None and not procs.group_alive(group):
                break
            if group is None and not procs.processes_with_token(rec.token, rec.created):
                break
            await asyncio.sleep(0.02 if group is not None else 0.1)
        if group is not None:
            procs.signal_group(group, signal.SIGKILL)
        procs.kill_leftovers(rec.token, rec.created)
        self._close_master()
        self.eof = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.finished.wait(), timeout=5.0)
        if not self.finished.is_set():  # the leader was never reaped (not our child?): give up on it
            self.reaped = True
            self._finish()

    def close_handles(self) -> None:
        self._close_master()
        self.log.close()


def _child_exec(slave: int, master: int, status: int, argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """In the forked child: new session, the PTY as controlling terminal and stdio, default signals, exec.
    A failure is written to the `status` pipe (which exec closes on success)."""
    try:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
        os.close(master)
        os.chdir(cwd)
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.execvpe(argv[0], argv, env)
    except BaseException as e:  # the child must never return into the daemon's code
        with contextlib.suppress(OSError):
            os.write(status, (e.strerror if isinstance(e, OSError) and e.strerror else str(e)).encode())
    finally:
        os._exit(127)


def log_path(state_dir: Path, tab_id: int) -> Path:
    return state_dir / "logs" / f"{tab_id}.log"
