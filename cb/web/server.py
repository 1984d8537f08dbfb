"""The HTTP side of `cb web`: a stdlib ThreadingHTTPServer, one thread per connection.

    GET  /  /files  /tabs             the pages (server-rendered)
    GET  /static/app.js|app.css       the page's script and style (the style carries Pygments' rules)
    GET  /api/tabs/stream             SSE: the tabs fragment whenever a tab writes or changes state
    POST /api/chat {message}          SSE: status, the answer so far (as HTML), then done (speed line, meter,
                                      the batch) | cancelled | error; leaving the page cancels the turn
    POST /api/batch/ID/decide|edit|undo|run|decline-run, /api/files/open|close, /api/context, /api/undo,
         /api/clear, /api/session/use|new, /api/tabs/run|kill
                                      JSON in; JSON out: {"html"} (the fragment for the button's target),
                                      {"message"}, {"reload": true}, or {"error"} with a 4xx status

Every request passes `security.Guard.check` before anything else (its body is not even read when refused);
every response carries `security.HEADERS`. Request lines are logged only with `verbose`, and without their
query strings (where the token travels, once).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentshell.protocol import AgentshellError
from cb.chat import TurnCancelled, describe_error, stats_line
from cb.config import Settings
from cb.render import Out
from cb.session import SessionError
from cb.web import markup, pages, tabs
from cb.web.batches import BatchError
from cb.web.security import HEADERS, Guard, Verdict
from cb.web.state import Busy, WebState

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1 << 20
STREAM_EVERY_S = 0.05  # the answer is re-rendered and sent at most this often while it streams
HEARTBEAT_POLLS = 20  # tab stream: a comment after this many quiet polls, to notice a page that left


class Refusal(Exception):
    """A request this server will not serve; `status` and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class WebServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, state: WebState, guard_key: str | None, verbose: bool) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.stop = threading.Event()
        super().__init__((host, port), Handler)
        self.state = state
        self.guard = Guard(host, int(self.server_address[1]), guard_key)
        self.verbose = verbose
        theme = state.settings.code_theme
        self.static = {
            "/static/app.js": ("text/javascript; charset=utf-8", (STATIC / "app.js").read_bytes()),
            "/static/app.css": ("text/css; charset=utf-8",
                                (STATIC / "app.css").read_bytes() + markup.code_css(theme).encode()),
        }

    def server_close(self) -> None:
        self.stop.set()
        super().server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WebServer
    server_version = "cb-web"
    sys_version = ""

    # --- plumbing --------------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's algorithm and the browser's
        # delayed ACK hold each response back ~40 ms on a kept-alive connection
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.verbose:
            sys.stderr.write(f"cb web: {self.command} {urlsplit(self.path).path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: the stdlib's messages can quote the request line, query string (token) included."""

    def _headers(self, status: int, kind: str, length: int | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {**HEADERS, "Content-Type": kind, **(extra or {})}.items():
            self.send_header(name, value)
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status: int, kind: str, data: bytes, extra: dict[str, str] | None = None) -> None:
        self._headers(status, kind, len(data), extra)
        if self.command != "HEAD":
            self.wfile.write(data)

    def _html(self, page: str, status: int = 200) -> None:
        self._send(status, "text/html; charset=utf-8", page.encode())

    def _json(self, data: dict[str, Any], status: int = 200) -> None:
        self._send(status, "application/json", json.dumps(data).encode())

    def _refuse(self, verdict: Verdict | Refusal) -> None:
        status, reason = (verdict.status, verdict.reason) if isinstance(verdict, Verdict) else (
            verdict.status, str(verdict))
        if urlsplit(self.path).path.startswith("/api/"):
            self._json({"error": reason}, status)
        else:
            self._html(pages.refused(status, reason), status)

    def _guarded(self) -> bool:
        verdict = self.server.guard.check(self.command, self.path, self.headers)
        if verdict.redirect:
            self._send(303, "text/plain", b"", {"Location": verdict.redirect,
                                                "Set-Cookie": self.server.guard.set_cookie()})
            return False
        if not verdict.ok:
            self.close_connection = True
            self._refuse(verdict)
            return False
        return True

    def _body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refusal(411, "a request body needs a Content-Length") from None
        if not 0 <= length <= MAX_BODY:
            raise Refusal(413, f"request bodies are limited to {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise Refusal(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise Refusal(400, "the request body must be a JSON object")
        return body

    def _events(self) -> Callable[[dict[str, Any] | None], None]:
        """Start an SSE response; returns the function that sends one event (None: a heartbeat comment)."""
        self._headers(200, "text/event-stream; charset=utf-8", None)

        def send(event: dict[str, Any] | None) -> None:
            frame = ": ping\n\n" if event is None else f"data: {json.dumps(event)}\n\n"
            self.wfile.write(frame.encode())
            self.wfile.flush()

        return send

    # --- verbs -----------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._guarded():
            return
        path = urlsplit(self.path).path
        state = self.server.state
        try:
            if path in self.server.static:
                kind, data = self.server.static[path]
                self._send(200, kind, data)
            elif path == "/api/tabs/stream":
                self._tab_stream()
            elif path in ("/", "/files", "/tabs"):
                page = {"/": "chat", "/files": "files", "/tabs": "tabs"}[path]
                main = (pages.chat_page(state) if page == "chat" else pages.files_page(state) if page == "files"
                        else pages.tabs_page(tabs.snapshot()))
                self._html(pages.layout(state, page, self.server.guard.csrf, main))
            elif path == "/favicon.ico":
                self._send(204, "text/plain", b"")
            else:
                raise Refusal(404, f"no page {path}")
        except Refusal as exc:
            self._refuse(exc)
        except Exception as exc:  # one line on the page, never a traceback
            self._refuse(Refusal(500, describe_error(exc)))

    def do_POST(self) -> None:
        if not self._guarded():
            return
        path = urlsplit(self.path).path
        try:
            body = self._body()
            if path == "/api/chat":
                self._chat(body)
                return
            self._json(self._act(path, body))
        except Refusal as exc:
            self._refuse(exc)
        except (BatchError, SessionError, Busy, AgentshellError) as exc:
            self._json({"error": str(exc)}, 409 if isinstance(exc, Busy) else 400)
        except Exception as exc:  # one line on the page, never a traceback
            self._json({"error": describe_error(exc)}, 500)

    def do_PUT(self) -> None:
        self._guarded()  # refused: 405 after the checks that come first

    do_DELETE = do_PATCH = do_PUT

    # --- actions ---------------------------------------------------------------------------------------

    def _act(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        state = self.server.state
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "batch"] and len(parts) == 4:
            batch = state.batch(parts[2])
            verb = parts[3]
            if verb == "decide":
                card = body.get("card")
                batch.decide(None if card is None else _int(card), str(body.get("decision")),
                             bool(body.get("anyway")))
            elif verb == "edit":
                batch.edit(_int(body.get("card")), str(body.get("blocks", "")))
            elif verb == "undo":
                batch.undo()
            elif verb == "run":
                batch.run(_int(body.get("run")), body.get("confirmed") is True)
            elif verb == "decline-run":
                batch.decline_run(_int(body.get("run")))
            else:
                raise Refusal(404, f"no action {verb}")
            return {"html": pages.batch_html(batch)}
        if path == "/api/files/open":
            added = state.open_files([str(body.get("path", "")).strip()])
            return {"html": pages.files_fragment(state), "message": f"opened {len(added)} file(s)"}
        if path == "/api/files/close":
            state.close_file(str(body.get("path", "")))
            return {"html": pages.files_fragment(state)}
        if path == "/api/context":
            state.measure()
            return {"html": pages.meter_html(state)}
        if path == "/api/undo":
            return {"message": state.undo_last(), "reload": True}
        if path == "/api/clear":
            state.clear()
            return {"reload": True}
        if path == "/api/session/use":
            state.use_session(str(body.get("session", "")))
            return {"reload": True}
        if path == "/api/session/new":
            state.new_session(str(body.get("name", "")))
            return {"reload": True}
        if path == "/api/tabs/run":
            command = str(body.get("command", "")).strip()
            if not command:
                raise BatchError("type a command to run")
            info = tabs.start(command, str(body.get("name", "")).strip() or None, state.project)
            return {"message": f"tab {info.label} started"}
        if path == "/api/tabs/kill":
            info = tabs.kill(str(body.get("tab", "")))
            return {"message": f"tab {info.label} {info.status}"}
        raise Refusal(404, f"no action {path}")

    def _chat(self, body: dict[str, Any]) -> None:
        question = str(body.get("message", "")).strip()
        if not question:
            raise Refusal(400, "type a question first")
        send = self._events()
        pieces: list[str] = []
        last = [0.0]

        def on_text(piece: str) -> None:
            pieces.append(piece)
            now = time.monotonic()
            if now - last[0] >= STREAM_EVERY_S:
                last[0] = now
                try:
                    send({"t": "answer", "html": markup.markdown("".join(pieces))})
                except OSError:
                    raise TurnCancelled from None  # the page went away: stop generating

        state = self.server.state
        try:
            turn, batch = state.turn(question, on_text, lambda text: send({"t": "status", "text": text}))
        except OSError:
            return  # the page went away before the answer started
        except Exception as exc:
            with contextlib.suppress(OSError):
                send({"t": "error", "message": describe_error(exc)})
            return
        with contextlib.suppress(OSError):
            if turn.cancelled:
                send({"t": "cancelled"})
                return
            send({"t": "answer", "html": markup.markdown(turn.answer)})
            send({"t": "done", "speed": stats_line(turn), "cuts": turn.cuts, "meter": pages.meter_html(state),
                  "batch": pages.batch_html(batch) if batch else ""})

    def _tab_stream(self) -> None:
        send = self._events()
        try:
            for views in tabs.watch(self.server.stop, heartbeat=HEARTBEAT_POLLS):
                send(None if views is None else {"html": pages.tabs_fragment(views)})
        except OSError:
            return  # the page left


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BatchError(f"expected a number, not {value!r}")
    return value


def serve(settings: Settings, host: str, port: int, key: str | None, verbose: bool = False,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve until Ctrl-C; `ready` gets the URL to open (with the token) once the socket listens."""
    state = WebState(settings, Out(code_theme=settings.code_theme))
    httpd = WebServer(host, port, state, key, verbose)
    try:
        if ready is not None:
            ready(httpd.guard.url())
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        state.close()
