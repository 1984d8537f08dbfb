"""The agentshell wire protocol, shared by the daemon and the client: frames, requests, results, errors.

One Unix stream socket; each message is a frame = 4-byte big-endian length + that many bytes of UTF-8 JSON.

- The first frame a client sends is `hello` with `PROTOCOL_VERSION`; anything else, or a different major
  version, is answered with a `version` error and the connection is closed.
- A request is `{"id": int, "op": str, "args": {...}}`; its answer is `{"id": same, "ok": true, "result": {...}}`
  or `{"id": same, "ok": false, "error": {"code": str, "message": str}}`.
- A streaming request (`attach`) is answered once, then followed by events `{"id": same, "event": str, ...}`
  until `detach` or the end of the tab.
- Frames from clients are capped at `MAX_REQUEST_FRAME` (checked from the length prefix, before reading the
  body); frames from the daemon at `MAX_RESPONSE_FRAME`.
- Bytes (tab output, raw input) travel base64-encoded in fields named `*_b64`.

Each request is a frozen dataclass with its `OP`; `parse_request` validates a decoded frame into one, so the
daemon never sees unchecked input. Errors are a closed set of codes (`ErrorCode`), each with an exception
class on the client side (`error_for`).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import math
import struct
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
MAX_REQUEST_FRAME = 1 << 20  # 1 MiB from a client: oversize is refused from the length prefix alone
MAX_RESPONSE_FRAME = 8 << 20  # 8 MiB from the daemon
MAX_READ_BYTES = 1 << 20  # one `read` returns at most this much output
MAX_INPUT_BYTES = 256 << 10  # one `send` writes at most this much input

# Tab statuses. `lost`: it was running when the daemon died; its leftovers were cleaned up, it is never re-run.
RUNNING, EXITED, KILLED, LOST = "running", "exited", "killed", "lost"
STATUSES = (RUNNING, EXITED, KILLED, LOST)


# --- errors ------------------------------------------------------------------------------------------------


class ErrorCode:
    """The closed set of error codes the daemon sends."""

    BAD_FRAME = "bad_frame"  # not a frame: oversize, truncated, not JSON, not an object
    BAD_REQUEST = "bad_request"  # a frame, but arguments are missing, unknown or of the wrong type
    VERSION = "version"  # no hello first, or an incompatible protocol version
    UNKNOWN_OP = "unknown_op"
    NO_SUCH_TAB = "no_such_tab"
    AMBIGUOUS_TAB = "ambiguous_tab"
    NOT_RUNNING = "not_running"  # the request needs a running tab
    STILL_RUNNING = "still_running"  # rm of a running tab without force
    NAME_TAKEN = "name_taken"
    SPAWN_FAILED = "spawn_failed"
    TIMEOUT = "timeout"  # a wait that ran out of time
    ACCESS_DENIED = "access_denied"
    UNAVAILABLE = "unavailable"  # client side: no daemon, and none could be started
    INTERNAL = "internal"


class AgentshellError(Exception):
    """Base of every agentshell error; `code` is an `ErrorCode` value, str(e) a one-line message for users."""

    code = ErrorCode.INTERNAL

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ProtocolError(AgentshellError):
    code = ErrorCode.BAD_FRAME


class BadRequest(AgentshellError):
    code = ErrorCode.BAD_REQUEST


class VersionMismatch(AgentshellError):
    code = ErrorCode.VERSION


class NoSuchTab(AgentshellError):
    code = ErrorCode.NO_SUCH_TAB


class TabNotRunning(AgentshellError):
    code = ErrorCode.NOT_RUNNING


class TabStillRunning(AgentshellError):
    code = ErrorCode.STILL_RUNNING


class SpawnFailed(AgentshellError):
    code = ErrorCode.SPAWN_FAILED


class WaitTimeout(AgentshellError):
    code = ErrorCode.TIMEOUT


class AccessDenied(AgentshellError):
    code = ErrorCode.ACCESS_DENIED


class DaemonUnavailable(AgentshellError):
    code = ErrorCode.UNAVAILABLE


_ERROR_CLASSES: dict[str, type[AgentshellError]] = {
    cls.code: cls
    for cls in (ProtocolError, BadRequest, VersionMismatch, NoSuchTab, TabNotRunning, TabStillRunning,
                SpawnFailed, WaitTimeout, AccessDenied, DaemonUnavailable)
}


def error_for(code: str, message: str) -> AgentshellError:
    """The exception for an error frame's code (unknown codes become a plain AgentshellError with that code)."""
    cls = _ERROR_CLASSES.get(code, AgentshellError)
    return cls(message, code)


# --- frames ------------------------------------------------------------------------------------------------


def encode_frame(message: dict[str, Any]) -> bytes:
    """One frame: length prefix + compact UTF-8 JSON."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes, limit: int) -> int:
    """The body length announced by a 4-byte header; ProtocolError when it is over `limit` (nothing allocated)."""
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise ProtocolError(f"frame of {length} bytes is over the limit of {limit}")
    return length


def decode_body(body: bytes) -> dict[str, Any]:
    """A frame body as a JSON object; ProtocolError otherwise."""
    try:
        message = json.loads(body.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"frame is not UTF-8 JSON: {e}") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as e:
        raise BadRequest(f"invalid base64: {e}") from None


def ok_frame(request_id: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


def error_frame(request_id: int | None, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


def event_frame(request_id: int, event: str, **fields: Any) -> dict[str, Any]:
    return {"id": request_id, "event": event, **fields}


# --- requests ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """Base of every request; subclasses set OP and declare their arguments as typed fields."""

    OP: ClassVar[str] = ""

    def args(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Hello(Request):
    """First frame of every connection. Result: {version, server, pid}."""

    OP: ClassVar[str] = "hello"
    version: int
    client: str = ""


@dataclass(frozen=True)
class Ping(Request):
    """Liveness. Result: {pid, tabs, uptime}."""

    OP: ClassVar[str] = "ping"


@dataclass(frozen=True)
class ListTabs(Request):
    """Result: {tabs: [TabInfo...]} in id order."""

    OP: ClassVar[str] = "ls"


@dataclass(frozen=True)
class GetTab(Request):
    """Result: {tab: TabInfo}. `tab` is an id or a name, as in every request that names a tab."""

    OP: ClassVar[str] = "info"
    tab: str


@dataclass(frozen=True)
class NewTab(Request):
    """Start a tab. argv None = the user's shell. env adds to the daemon's environment. Result: {tab: TabInfo}."""

    OP: ClassVar[str] = "new"
    argv: list[str] | None = None
    name: str | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cols: int = 120
    rows: int = 40


@dataclass(frozen=True)
class SendInput(Request):
    """Write to a tab: `text` (defused: bracketed-paste markers and control sequences removed), then `keys`
    (named keys like "Enter", "C-c", "Up"; see `keys.py`). Result: {written: bytes count, removed: count}."""

    OP: ClassVar[str] = "send"
    tab: str
    text: str = ""
    keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReadOutput(Request):
    """Raw output bytes from the ring. since = an absolute offset (from an earlier read's `end`); tail = the
    last N bytes; neither = everything kept. Result: {data_b64, start, end, dropped, status}."""

    OP: ClassVar[str] = "read"
    tab: str
    since: int | None = None
    tail: int | None = None
    max_bytes: int = MAX_READ_BYTES


@dataclass(frozen=True)
class RenderTail(Request):
    """The last `lines` lines as a terminal would show them (plain text). With `reader`, the daemon remembers
    what that reader has seen and puts a marker line before what is new since its last look (and, with
    `mark_seen`, moves its mark to the end). Result: Tail."""

    OP: ClassVar[str] = "tail"
    tab: str
    lines: int = 40
    reader: str = ""
    mark_seen: bool = True


@dataclass(frozen=True)
class RenderScreen(Request):
    """The tab's current screen (cols x rows) as plain text lines. Result: {lines: [str], cursor: [x, y]}."""

    OP: ClassVar[str] = "screen"
    tab: str


@dataclass(frozen=True)
class Wait(Request):
    """Wait until the output matches `pattern` (a Python regex over the output with escape sequences removed,
    searched from offset `since`, default: all output kept), or no output came for `idle` seconds, or the tab
    exited (`exit`). Several conditions: the first one met wins. Result: {reason: "match"|"idle"|"exit",
    match, offset, tab: TabInfo}. Error `timeout` after `timeout` seconds."""

    OP: ClassVar[str] = "wait"
    tab: str
    pattern: str | None = None
    idle: float | None = None
    exit: bool = False
    timeout: float | None = None
    since: int | None = None


@dataclass(frozen=True)
class SignalTab(Request):
    """Send a signal (name like "INT"/"SIGINT" or number) to the tab's whole process group."""

    OP: ClassVar[str] = "signal"
    tab: str
    signal: str


@dataclass(frozen=True)
class Resize(Request):
    OP: ClassVar[str] = "resize"
    tab: str
    cols: int
    rows: int


@dataclass(frozen=True)
class KillTab(Request):
    """End the tab's process group: HUP+TERM, then KILL after the daemon's stop timeout. Result: {tab}."""

    OP: ClassVar[str] = "kill"
    tab: str


@dataclass(frozen=True)
class RemoveTab(Request):
    """Forget a tab (and delete its logs). A running tab needs `force` (it is killed first)."""

    OP: ClassVar[str] = "rm"
    tab: str
    force: bool = False


@dataclass(frozen=True)
class RenameTab(Request):
    OP: ClassVar[str] = "rename"
    tab: str
    name: str


@dataclass(frozen=True)
class LogPaths(Request):
    """The tab's log files, oldest first. Result: {paths: [str]}."""

    OP: ClassVar[str] = "logs"
    tab: str


@dataclass(frozen=True)
class Attach(Request):
    """Stream a tab: the answer carries the current screen as `redraw_b64`; then events `output` (data_b64,
    defused of clipboard writes and terminal queries) and finally `exit` (tab: TabInfo). Input goes through
    ordinary `send` requests on the same connection."""

    OP: ClassVar[str] = "attach"
    tab: str


@dataclass(frozen=True)
class Detach(Request):
    """Stop this connection's attach stream."""

    OP: ClassVar[str] = "detach"


@dataclass(frozen=True)
class Shutdown(Request):
    """Stop the daemon: every running tab is ended (as `kill`), state saved, socket removed."""

    OP: ClassVar[str] = "shutdown"


REQUESTS: dict[str, type[Request]] = {
    cls.OP: cls
    for cls in (Hello, Ping, ListTabs, GetTab, NewTab, SendInput, ReadOutput, RenderTail, RenderScreen, Wait,
                SignalTab, Resize, KillTab, RemoveTab, RenameTab, LogPaths, Attach, Detach, Shutdown)
}


def _conforms(value: Any, tp: Any) -> bool:
    """Whether a decoded JSON value fits a field annotation (the few shapes requests use)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(tp)
        return isinstance(value, dict) and all(_conforms(k, key) and _conforms(v, item) for k, v in value.items())
    raise TypeError(f"unsupported annotation {tp!r}")


@functools.cache
def _schema(cls: type[Request]) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def parse_request(message: dict[str, Any]) -> tuple[int, Request]:
    """Validate a decoded frame into (request id, request). Raises BadRequest / AgentshellError(UNKNOWN_OP)."""
    request_id = message.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise BadRequest("request has no integer 'id'")
    op = message.get("op")
    cls = REQUESTS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise AgentshellError(f"unknown op {op!r}", ErrorCode.UNKNOWN_OP)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise BadRequest(f"{op}: 'args' is not an object")
    hints, fields_ = _schema(cls)
    unknown = set(args) - set(fields_)
    if unknown:
        raise BadRequest(f"{op}: unknown argument(s) {', '.join(sorted(unknown))}")
    for name, f in fields_.items():
        if name in args:
            if not _conforms(args[name], hints[name]):
                raise BadRequest(f"{op}: argument {name!r} has the wrong type")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BadRequest(f"{op}: missing argument {name!r}")
    return request_id, cls(**args)


def request_frame(request_id: int, request: Request) -> dict[str, Any]:
    return {"id": request_id, "op": request.OP, "args": request.args()}


# --- results -----------------------------------------------------------------------------------------------


@dataclass
class TabInfo:
    """What `ls`/`info` say about a tab. Offsets count every byte the tab ever wrote."""

    id: int
    name: str
    argv: list[str]
    cwd: str
    status: str  # one of STATUSES
    pid: int | None
    exit_code: int | None  # the process's exit code; None while running, or when it died of a signal
    exit_signal: int | None  # the signal that ended it
    created: float  # unix time
    ended: float | None
    cols: int
    rows: int
    end_offset: int  # total bytes of output so far
    kept_bytes: int  # bytes currently in the ring
    dropped_bytes: int  # bytes dropped from the ring's front (still in the log files)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TabInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """`3:devserver` or `3`."""
        return f"{self.id}:{self.name}" if self.name else str(self.id)


@dataclass
class Output:
    """Raw bytes of a tab's output between absolute offsets [start, end); `dropped` bytes before `start` that
    were asked for but are no longer in the ring."""

    data: bytes
    start: int
    end: int
    dropped: int
    status: str

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Output:
        return cls(unb64(data["data_b64"]), data["start"], data["end"], data["dropped"], data["status"])


@dataclass
class Tail:
    """A tab's tail rendered as plain text, for the prompt.

    `text` is the lines joined, with `NEW_MARKER` inserted as its own line before the first line that is new
    since the reader last looked (no marker when nothing is new or the reader never looked).
    """

    tab: TabInfo
    text: str
    lines: list[str]
    new_from: int | None  # index into `lines` of the first new line; None when nothing is new
    new_bytes: int  # output bytes since the reader's last look
    end_offset: int

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Tail:
        return cls(TabInfo.from_wire(data["tab"]), data["text"], data["lines"], data["new_from"],
                   data["new_bytes"], data["end_offset"])


@dataclass
class WaitResult:
    reason: str  # "match" | "idle" | "exit"
    match: str | None
    offset: int  # the end offset of the output when the wait finished (or of the match)
    tab: TabInfo

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> WaitResult:
        return cls(data["reason"], data["match"], data["offset"], TabInfo.from_wire(data["tab"]))


NEW_MARKER = "──── new since you last looked ────"
DROPPED_MARKER = "[agentshell: {n} earlier bytes dropped]"
