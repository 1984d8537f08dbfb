"""The sync client library of agentshell: one method per request, the daemon started on demand.

Used by the `agentshell` CLI and by cb (`/tabs`, `/run`, tab tails in the prompt, `run(tab, command)`):

    from agentshell.client import Client

    with Client.connect() as sh:                      # starts the daemon if none is running
        tab = sh.new(["npm", "run", "dev"], name="dev")
        sh.wait(tab.id, pattern=r"ready on", timeout=30)
        print(sh.tail("dev", lines=20, reader="cb").text)   # marker before what is new since cb's last look
        sh.run_command("dev", "rs")                   # types `rs` + Enter (after the user confirmed it)

Tabs are named by id (int, or its decimal string) or by name. Errors are `AgentshellError` subclasses from
`agentshell.protocol` (NoSuchTab, TabNotRunning, WaitTimeout, DaemonUnavailable, ...), each with a one-line
message fit for users. Stdlib only, cheap to import: no pyte, no asyncio.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from agentshell import protocol as p
from agentshell.sockpath import socket_address
from cb import paths

TabRef = int | str
START_TIMEOUT = 10.0


class Client:
    """A connection to the daemon. Not thread-safe; one request at a time (or one attach stream)."""

    def __init__(self, sock: socket.socket, timeout: float | None = 30.0) -> None:
        self._sock = sock
        self._timeout = timeout
        self._next_id = 1
        self.server: dict[str, Any] = {}

    # --- connection ------------------------------------------------------------------------------------------

    @classmethod
    def connect(cls, socket_path: Path | None = None, *, autostart: bool = True, timeout: float | None = 30.0,
                client_name: str = "agentshell-client") -> Client:
        """Connect (and say hello). With `autostart`, start a background daemon when none answers."""
        path = socket_path or paths.agentshell_socket()
        try:
            sock = _open(path)
        except OSError as first:
            if not autostart:
                raise p.DaemonUnavailable(f"agentshell is not running ({path}: {first.strerror})") from None
            start_daemon()
            sock = _wait_for_socket(path, START_TIMEOUT)
        client = cls(sock, timeout)
        client.server = client._call(p.Hello(version=p.PROTOCOL_VERSION, client=client_name))
        return client

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    # --- framing ---------------------------------------------------------------------------------------------

    def send_request(self, request: p.Request) -> int:
        """Send a request without waiting for its answer; returns its id (for attach, which streams)."""
        request_id = self._next_id
        self._next_id += 1
        try:
            self._sock.sendall(p.encode_frame(p.request_frame(request_id, request)))
        except OSError as e:
            raise p.DaemonUnavailable(f"lost the connection to agentshell: {e.strerror or e}") from None
        return request_id

    def recv_frame(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame from the daemon (an answer or an event)."""
        self._sock.settimeout(timeout)
        try:
            header = self._recv_exact(p.HEADER.size)
            body = self._recv_exact(p.frame_length(header, p.MAX_RESPONSE_FRAME))
        except TimeoutError:
            raise p.DaemonUnavailable("agentshell did not answer in time") from None
        except OSError as e:
            raise p.DaemonUnavailable(f"lost the connection to agentshell: {e.strerror or e}") from None
        return p.decode_body(body)

    def _recv_exact(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self._sock.recv(min(n - len(chunks), 1 << 20))
            if not chunk:
                raise p.DaemonUnavailable("agentshell closed the connection")
            chunks += chunk
        return bytes(chunks)

    def _call(self, request: p.Request, timeout: float | None = -1.0) -> dict[str, Any]:
        request_id = self.send_request(request)
        wait = self._timeout if timeout == -1.0 else timeout
        while True:
            frame = self.recv_frame(wait)
            if frame.get("id") == request_id and "ok" in frame:
                return check(frame)
            if frame.get("id") is None and frame.get("ok") is False:
                check(frame)  # a connection-level error (bad frame, version): raises

    # --- tabs ------------------------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """{pid, tabs, uptime} of the daemon."""
        return self._call(p.Ping())

    def ls(self) -> list[p.TabInfo]:
        """Every tab the daemon knows, running or not, in id order."""
        return [p.TabInfo.from_wire(t) for t in self._call(p.ListTabs())["tabs"]]

    def info(self, tab: TabRef) -> p.TabInfo:
        return p.TabInfo.from_wire(self._call(p.GetTab(str(tab)))["tab"])

    def new(self, argv: list[str] | None = None, *, name: str | None = None, cwd: str | os.PathLike[str] | None = None,
            env: dict[str, str] | None = None, cols: int = 120, rows: int = 40) -> p.TabInfo:
        """Start a tab running `argv` (None: the user's shell) in `cwd` (default: this process's cwd)."""
        where = os.fspath(cwd) if cwd is not None else os.getcwd()
        request = p.NewTab(argv=argv, name=name, cwd=where, env=env or {}, cols=cols, rows=rows)
        return p.TabInfo.from_wire(self._call(request)["tab"])

    def run(self, command: str, *, name: str | None = None, cwd: str | os.PathLike[str] | None = None) -> p.TabInfo:
        """`/run CMD`: a new tab running `CMD` through the user's shell (`$SHELL -c CMD`)."""
        return self.new([user_shell(), "-c", command], name=name, cwd=cwd)

    def send(self, tab: TabRef, text: str = "", keys: list[str] | None = None) -> dict[str, int]:
        """Type `text` (defused by the daemon) then named `keys` ("Enter", "C-c", "Up", ...). {written, removed}."""
        return self._call(p.SendInput(str(tab), text=text, keys=keys or []))

    def run_command(self, tab: TabRef, command: str) -> dict[str, int]:
        """A confirmed `run(tab, command)`: type the command line and press Enter."""
        return self.send(tab, command, ["Enter"])

    def read(self, tab: TabRef, *, since: int | None = None, tail: int | None = None,
             max_bytes: int = p.MAX_READ_BYTES) -> p.Output:
        """Raw output bytes: from absolute offset `since`, or the last `tail` bytes, or all that is kept."""
        return p.Output.from_wire(self._call(p.ReadOutput(str(tab), since=since, tail=tail, max_bytes=max_bytes)))

    def tail(self, tab: TabRef, lines: int = 40, *, reader: str = "", mark_seen: bool = True) -> p.Tail:
        """The last `lines` lines rendered as plain text; with `reader`, a marker before what is new to it."""
        return p.Tail.from_wire(self._call(p.RenderTail(str(tab), lines=lines, reader=reader, mark_seen=mark_seen)))

    def screen(self, tab: TabRef) -> list[str]:
        """The tab's screen as it would look now, one string per row."""
        return self._call(p.RenderScreen(str(tab)))["lines"]

    def wait(self, tab: TabRef, *, pattern: str | None = None, idle: float | None = None, exit: bool = False,
             timeout: float | None = None, since: int | None = None) -> p.WaitResult:
        """Block until a pattern shows, the tab goes quiet for `idle` s, or it exits. WaitTimeout after `timeout`."""
        request = p.Wait(str(tab), pattern=pattern, idle=idle, exit=exit, timeout=timeout, since=since)
        # The daemon enforces `timeout`; give the socket slack beyond it.
        socket_timeout = None if timeout is None else timeout + 10.0
        return p.WaitResult.from_wire(self._call(request, timeout=socket_timeout))

    def signal(self, tab: TabRef, sig: str | int) -> p.TabInfo:
        """Send a signal (e.g. "INT", "SIGTERM", 9) to the tab's process group."""
        return p.TabInfo.from_wire(self._call(p.SignalTab(str(tab), str(sig)))["tab"])

    def resize(self, tab: TabRef, cols: int, rows: int) -> p.TabInfo:
        return p.TabInfo.from_wire(self._call(p.Resize(str(tab), cols, rows))["tab"])

    def kill(self, tab: TabRef) -> p.TabInfo:
        """End the tab's whole process group (TERM, then KILL after the stop timeout); returns once it is gone."""
        return p.TabInfo.from_wire(self._call(p.KillTab(str(tab)))["tab"])

    def rm(self, tab: TabRef, *, force: bool = False) -> None:
        """Forget a tab and delete its logs; `force` kills a running one first."""
        self._call(p.RemoveTab(str(tab), force=force))

    def rename(self, tab: TabRef, name: str) -> p.TabInfo:
        return p.TabInfo.from_wire(self._call(p.RenameTab(str(tab), name))["tab"])

    def logs(self, tab: TabRef) -> list[Path]:
        """The tab's log files, oldest first."""
        return [Path(x) for x in self._call(p.LogPaths(str(tab)))["paths"]]

    def attach(self, tab: TabRef) -> tuple[int, bytes, p.TabInfo]:
        """Start streaming a tab on this connection: (request id, redraw bytes, tab). Then read events with
        `recv_frame` (`output` with data_b64, `exit`), send input with `send_request(SendInput(...))`."""
        request_id = self.send_request(p.Attach(str(tab)))
        while True:
            frame = self.recv_frame(self._timeout)
            if frame.get("id") == request_id and "ok" in frame:
                result = check(frame)
                return request_id, p.unb64(result["redraw_b64"]), p.TabInfo.from_wire(result["tab"])

    def shutdown(self) -> None:
        """Stop the daemon (running tabs are ended)."""
        self._call(p.Shutdown(), timeout=60.0)


def check(frame: dict[str, Any]) -> dict[str, Any]:
    """An answer's result, or raise its error."""
    if frame.get("ok"):
        result = frame.get("result")
        return result if isinstance(result, dict) else {}
    error = frame.get("error") or {}
    raise p.error_for(str(error.get("code", p.ErrorCode.INTERNAL)), str(error.get("message", "unknown error")))


def user_shell() -> str:
    """$SHELL if it is an absolute path, else /bin/sh."""
    shell = os.environ.get("SHELL", "")
    return shell if os.path.isabs(shell) else "/bin/sh"


def _open(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address, dir_fd = socket_address(path)
    try:
        sock.settimeout(5.0)
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return sock


def _wait_for_socket(path: Path, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _open(path)
        except OSError as e:
            if time.monotonic() > deadline:
                raise p.DaemonUnavailable(f"agentshell did not start ({path}: {e.strerror}); "
                                          f"see {daemon_log_path()}") from None
            time.sleep(0.02)


def daemon_log_path() -> Path:
    return paths.agentshell_state_dir() / "daemon.log"


def start_daemon() -> None:
    """Start `agentshell serve --background` and return once it listens (or raise DaemonUnavailable)."""
    command = [sys.executable, "-m", "agentshell.daemon", "--background"]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=START_TIMEOUT + 5, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise p.DaemonUnavailable(f"could not start agentshell: {e}") from None
    if done.returncode != 0 and "already running" not in done.stderr:
        message = (done.stderr.strip().splitlines() or ["no message"])[-1].removeprefix("agentshell: ")
        raise p.DaemonUnavailable(f"could not start agentshell: {message}")
