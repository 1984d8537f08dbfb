"""The ASGI layer in front of every route, in order: header size (431), API-key check (401 before any work), JSON
JSON content type for the POST endpoints (400), body size (413 from Content-Length, before reading the body), then an
access-log line and the request counter once the status is known.

The key is compared as SHA-256 digests with `secrets.compare_digest`, so the time taken does not depend
on how much of it matched. Neither the key, the Authorization header nor the query string is ever
logged: the access log names method, path, status and duration only.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ulm.server.errors import APIError

log = logging.getLogger("ulm.server.access")

MAX_HEADER_BYTES = 16 * 1024
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
JSON_TYPES = ("application/json",)


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The key from `Authorization: Bearer K` (scheme in any case) or `X-Api-Key: K`."""
    auth = headers.get(b"authorization")
    if auth is not None:
        scheme, _, token = auth.partition(b" ")
        return token if scheme.lower() == b"bearer" and token else None
    return headers.get(b"x-api-key")


class Guard:
    """Auth, content type, body size, access log and request metrics for the wrapped app."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        max_body: int,
        count: Callable[[str, int], None],
        endpoints: frozenset[str],
        body_paths: frozenset[str],
    ) -> None:
        self.app = app
        self._key_digest = _digest(api_key) if api_key else None
        self.max_body = max_body
        self._count = count
        self._endpoints = endpoints
        self._body_paths = body_paths  # POST endpoints that take a JSON body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        path: str = scope["path"]
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            error = self._refuse(scope)
            if error is not None:
                await _answer(error, send_and_note)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            endpoint = path if path in self._endpoints else "other"
            self._count(endpoint, status or 499)
            log.info("%s %s %s %.1fms", scope["method"], endpoint, status or "-", (time.monotonic() - start) * 1000)

    def _refuse(self, scope: Scope) -> APIError | None:
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            return APIError(431, f"the request headers are over {MAX_HEADER_BYTES} bytes",
                            type="invalid_request_error")
        headers = dict(scope["headers"])
        method = scope["method"]
        if self._key_digest is not None and method != "OPTIONS" and scope["path"] not in PUBLIC_PATHS:
            key = presented_key(headers)
            if key is None or not secrets.compare_digest(_digest(key), self._key_digest):
                return APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                                code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        if method == "POST" and scope["path"] in self._body_paths:
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
            if ctype not in JSON_TYPES and not ctype.endswith("+json"):
                return APIError(400, f"Content-Type must be application/json, not '{ctype or 'none'}'",
                                param="Content-Type")
            length = headers.get(b"content-length")
            if length is not None:
                try:
                    n = int(length)
                except ValueError:
                    return APIError(400, "Content-Length is not a number")
                if n > self.max_body:
                    return APIError(413, f"the request body is {n} bytes, over the limit of {self.max_body}")
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                return APIError(411, "send the body with a Content-Length (chunked bodies are not accepted)")
        return None


async def _answer(error: APIError, send: Send) -> None:
    body = error.encoded()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    if error.status in (411, 413):
        headers.append((b"connection", b"close"))  # the unread body is still on the wire
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
