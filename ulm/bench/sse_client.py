"""The server benchmark's streaming client: one kept-alive HTTP/1.1 connection in stdlib asyncio that POSTs a
JSON body and yields the response's server-sent events as they arrive.

Why not httpx: the benchmark runs its clients on the machine that runs the server, so every microsecond a
client spends on a token is taken from the server it measures. Measured as the bench process's CPU time
over a level of 128 / 512 tokens: httpx's streaming took 0.52-0.60 ms a token with 1 client and
0.25-0.31 ms with 4; this client, which parses the chunked body and splits events with a few bytes
operations (the caller decodes each event's JSON), takes 0.21-0.26 and 0.13-0.14 ms.
Plain HTTP only (the benchmark talks to a local `ulm serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any


class StreamError(RuntimeError):
    """The server answered with an error status, or the connection broke mid-stream."""


class SSEConnection:
    """A kept-alive connection to `base` (http://host:port), opened on first use and reopened after the
    server closes it."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        url = urllib.parse.urlsplit(base)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"the benchmark's client speaks plain HTTP to a host: cannot use {base!r}")
        self._host, self._port = url.hostname, url.port or 80
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head = f"Host: {url.netloc}\r\nContent-Type: application/json\r\n{extra}"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _exchange(self, request: bytes) -> tuple[asyncio.StreamReader, int, dict[str, str]]:
        """Send a request on the connection (opened if need be); its reader and the response's head."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(request)
        return (reader, *await _read_head(reader))

    async def events(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """POST body to path; yield each event's data (the bytes after `data: `), `[DONE]` included."""
        data = json.dumps(body).encode()
        request = f"POST {path} HTTP/1.1\r\n{self._head}Content-Length: {len(data)}\r\n\r\n".encode() + data
        reused = self._streams is not None
        try:
            reader, status, headers = await self._exchange(request)
        except (StreamError, OSError):
            if not reused:
                raise
            # the server closed the kept-alive connection while it sat idle (its keep-alive timeout), before
            # reading this request: send it again on a new connection
            await self.close()
            reader, status, headers = await self._exchange(request)
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        if headers.get("connection", "").lower() == "close":
            self._streams = None
        if status != 200 or not chunked:
            text = await (_read_chunked(reader) if chunked else reader.read(int(headers.get("content-length", "0"))))
            raise StreamError(f"the server answered {status}: {text.decode(errors='replace')[:200]}")
        pending = b""
        try:
            while size := int((await reader.readline()).split(b";")[0], 16):
                pending += (await reader.readexactly(size + 2))[:-2]
                while b"\n\n" in pending:
                    event, pending = pending.split(b"\n\n", 1)
                    if event.startswith(b"data: "):
                        yield event[6:]
            await reader.readline()  # the empty trailer
        except (asyncio.IncompleteReadError, ValueError) as exc:
            self._streams = None
            raise StreamError(f"the stream broke off: {exc}") from None


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = await reader.readline()
    if not line:
        raise StreamError("the server closed the connection before answering")
    status = int(line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readline()).split(b";")[0], 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readline()
    return body
