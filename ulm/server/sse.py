"""Server-sent events as OpenAI sends them, and a streaming response that notices a client leaving.

Each event is `data: <json>\n\n`; the stream ends with `data: [DONE]\n\n`. While a request waits (queued,
prefilling) the stream carries `: keep-alive\n\n` comments (SSE's own comment lines, which clients skip), so
no read timeout fires on a long prefill. `EventStream` sends the
headers, then the events one `send` each (no buffering), while a watcher task waits for the client's
`http.disconnect`: when it arrives, `on_disconnect` runs at once (the engine frees the slot), whatever
the generator is waiting for — a queue turn, a prefill, the next token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class EventStream(Response):
    """An ASGI response streaming the byte chunks of `events`; `on_disconnect` runs if the client leaves.
    (A Response subclass so FastAPI passes it through untouched.)"""

    def __init__(self, events: AsyncIterator[bytes], on_disconnect: Callable[[], None]) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = list(HEADERS)
        self._events = events
        self._on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        self._on_disconnect()
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                async for chunk in self._events:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the socket went away between the watcher's turns
                self._on_disconnect()
            finally:
                tg.cancel_scope.cancel()
