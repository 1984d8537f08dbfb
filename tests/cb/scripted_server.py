"""A scripted OpenAI-compatible HTTP server for the client's edge cases (errors, timeouts, slow streams).

Each test enqueues replies; each POST /v1/chat/completions pops one. A reply is either a list of content
pieces (streamed as SSE deltas, with an optional delay between them and a usage chunk) and tool calls
(streamed as OpenAI `tool_calls` deltas: the name first, then the arguments in pieces), or an HTTP error
(a message, or a whole JSON body such as a context overflow's).
Chat requests are recorded (`requests`: headers and body) so tests can assert what cb sent, and so are the
paths of GET requests (`gets`). The server can pass for another kind: `owned_by` is what its /v1/models
entry says ("ulm", "llamacpp", "openai", …) and `props` what GET /props answers (None: 404). The main paths
are tested against the real `ulm serve` elsewhere; this is only for what a real server will not do on
demand.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    pieces: list[str] = field(default_factory=list)
    delay: float = 0.0
    status: int = 200
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    raw: bytes | None = None  # sent as the SSE body verbatim (for malformed streams)
    body: dict[str, Any] | None = None  # an error answer's JSON body (default: {"error": {"message": error}})
    finish_reason: str = "stop"
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "arguments": str}], streamed


class ScriptedServer:
    """Serve on 127.0.0.1:<random port> in a thread; `base_url` ends in /v1."""

    def __init__(self, context_length: int = 4096, tokenize: bool = True, owned_by: str = "tests",
                 props: dict[str, Any] | None = None) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.owned_by = owned_by
        self.props = props
        self.context_length = context_length
        self.tokenize = tokenize
        self.disconnects = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                outer.gets.append(self.path)
                if self.path == "/health":
                    self._json(200, {"status": "ok"})
                elif self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [
                        {"id": "scripted", "object": "model", "owned_by": outer.owned_by,
                         "context_length": outer.context_length}]})
                elif self.path == "/props" and outer.props is not None:
                    self._json(200, outer.props)
                else:
                    self._json(404, {"error": {"message": "not found", "type": "not_found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/tokenize":
                    if not outer.tokenize:
                        self._json(404, {"error": {"message": "no tokenizer"}})
                        return
                    # one token per whitespace-separated word, plus one per 8 chars of long words
                    words = body.get("content", "").split()
                    self._json(200, {"tokens": [0] * sum(1 + len(w) // 8 for w in words)})
                    return
                outer.requests.append({"headers": dict(self.headers), "body": body})
                reply = outer.replies.pop(0) if outer.replies else Reply(["ok"])
                if reply.status != 200:
                    self._json(reply.status, reply.body or {"error": {"message": reply.error, "type": "test"}},
                               reply.headers)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    if reply.raw is not None:
                        self.wfile.write(reply.raw)
                        self.wfile.flush()
                        return
                    self._stream(reply)
                except (BrokenPipeError, ConnectionResetError):
                    outer.disconnects += 1
                self.close_connection = True

            def _send(self, obj: Any) -> None:
                self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
                self.wfile.flush()

            def _stream(self, reply: Reply) -> None:
                base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": "scripted"}
                self._send({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
                for piece in reply.pieces:
                    if reply.delay:
                        time.sleep(reply.delay)
                    self._send({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
                for i, call in enumerate(reply.tool_calls):
                    self._send({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": i, "id": f"call_{i}", "type": "function",
                         "function": {"name": call["name"], "arguments": ""}}]}}]})
                    args = call["arguments"]
                    for start in range(0, len(args), 7):
                        self._send({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                            {"index": i, "function": {"arguments": args[start:start + 7]}}]}}]})
                self._send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]})
                usage = reply.usage or {"prompt_tokens": 10, "completion_tokens": len(reply.pieces),
                                        "prompt_tokens_details": {"cached_tokens": 4}}
                self._send({**base, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def enqueue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
