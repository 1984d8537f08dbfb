"""Running one completion request through the engine and answering it, streamed or whole.

`start` checks the request against the context (400 exceed_context_size_error, before any SSE byte)
and submits it (429 + Retry-After at once when the queue is full); `answer` then either collects the
text (cancelling the request if the client disconnects while it waits) or returns an `EventStream`
in OpenAI's chunk format: one id, `role` only in the first chunk, `finish_reason` only in the last,
an optional usage chunk, then `data: [DONE]`. The engine's usage and timings become OpenAI's `usage` and
llama.cpp's `timings` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse

from ulm.engine.slots import Ticket
from ulm.engine.types import EngineStoppedError, Event, Failed, QueueFullError, Request, Timings, Usage
from ulm.engine.worker import Engine
from ulm.errors import ContextLengthError, EmptyPromptError
from ulm.server.errors import APIError
from ulm.server.metrics import Metrics
from ulm.server.sse import DONE, EventStream, event


class Mailbox:
    """Events from the engine's thread to one event loop, the loop woken once per batch: the engine hands
    over a step's events together, and each wake-up (a write to the loop's self-pipe) is a chance for the
    loop to take the GIL from the engine in the middle of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue[Event | Failed], Event | Failed]] = []

    def post(self, queue: asyncio.Queue[Event | Failed], ev: Event | Failed) -> None:  # worker thread
        with self._lock:
            self._items.append((queue, ev))
            if len(self._items) > 1:  # a wake-up is already on its way
                return
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the server is gone
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:  # event loop
        with self._lock:
            items, self._items = self._items, []
        for queue, ev in items:
            queue.put_nowait(ev)


_MAILBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Mailbox] = weakref.WeakKeyDictionary()


def mailbox(loop: asyncio.AbstractEventLoop) -> Mailbox:
    """The loop's mailbox (one per event loop; event loop thread)."""
    box = _MAILBOXES.get(loop)
    if box is None:
        box = _MAILBOXES[loop] = Mailbox(loop)
    return box


class Inbox:
    """The engine's events for one request, handed from the worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: Metrics, t_arrival: float) -> None:
        self._mailbox = mailbox(loop)
        self._queue: asyncio.Queue[Event | Failed] = asyncio.Queue()
        self._metrics = metrics
        self._t_last = t_arrival
        self._first = True

    def push(self, ev: Event | Failed) -> None:  # worker thread
        if isinstance(ev, Event):
            if ev.token_id is not None:
                now = time.monotonic()
                if self._first:
                    self._metrics.observe_ttft(now - self._t_last)
                else:
                    self._metrics.observe_tokens(now - self._t_last, 1)
                self._first = False
                self._t_last = now
            if ev.usage is not None:
                self._metrics.count_tokens(ev.usage.prompt_tokens, ev.usage.cached_tokens,
                                           ev.usage.completion_tokens)
        self._mailbox.post(self._queue, ev)

    async def events(self) -> AsyncIterator[Event | Failed]:
        while True:
            ev = await self._queue.get()
            yield ev
            if isinstance(ev, Failed) or ev.finish_reason is not None:
                return


@dataclass
class Job:
    """A submitted request and how to answer it."""

    kind: str  # "chat" or "text"
    model_id: str
    engine: Engine
    ticket: Ticket
    inbox: Inbox
    include_usage: bool
    id: str
    created: int


def start(kind: str, model_id: str, engine: Engine, metrics: Metrics, request: Request,
          include_usage: bool) -> Job:
    """Check and submit; raises APIError for context overflow, an empty prompt, a full queue or shutdown."""
    t_arrival = time.monotonic()
    try:
        engine.check(request)
        inbox = Inbox(asyncio.get_running_loop(), metrics, t_arrival)
        ticket = engine.submit(request, inbox.push)
    except ContextLengthError as exc:
        raise APIError(400, str(exc), type="exceed_context_size_error", code="context_length_exceeded",
                       param="messages" if kind == "chat" else "prompt",
                       n_prompt_tokens=exc.n_prompt_tokens, n_ctx=exc.n_ctx) from None
    except EmptyPromptError as exc:
        raise APIError(400, str(exc), param="messages" if kind == "chat" else "prompt") from None
    except ValueError as exc:  # sampling settings out of range, token ids outside the vocabulary
        raise APIError(400, str(exc), param=str(exc).split(" ", 1)[0]) from None
    except QueueFullError as exc:
        raise APIError(429, str(exc), code="queue_full", headers={"Retry-After": str(exc.retry_after_s)}) from None
    except EngineStoppedError as exc:
        raise APIError(503, str(exc), headers={"Retry-After": "1"}) from None
    prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
    return Job(kind, model_id, engine, ticket, inbox, include_usage, prefix + uuid.uuid4().hex, int(time.time()))


def usage(u: Usage) -> dict[str, Any]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def timings(u: Usage, t: Timings) -> dict[str, float | int]:
    """llama.cpp's timings object (milliseconds, tokens per second)."""
    def per_s(n: int, ms: float) -> float:
        return round(n / (ms / 1000.0), 2) if ms > 0 else 0.0

    def per_tok(n: int, ms: float) -> float:
        return round(ms / n, 3) if n else 0.0

    prompt_n, predicted_n = u.prefilled_tokens, u.completion_tokens
    return {
        "cache_n": u.cached_tokens,
        "prompt_n": prompt_n,
        "prompt_ms": round(t.prefill_ms, 3),
        "prompt_per_token_ms": per_tok(prompt_n, t.prefill_ms),
        "prompt_per_second": per_s(prompt_n, t.prefill_ms),
        "predicted_n": predicted_n,
        "predicted_ms": round(t.decode_ms, 3),
        "predicted_per_token_ms": per_tok(predicted_n, t.decode_ms),
        "predicted_per_second": per_s(predicted_n, t.decode_ms),
    }


async def answer(job: Job, request: HTTPRequest, stream: bool) -> Any:
    if stream:
        return EventStream(_chunks(job), on_disconnect=lambda: job.engine.cancel(job.ticket))
    return await _whole(job, request)


async def _wait_disconnect(request: HTTPRequest) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _whole(job: Job, request: HTTPRequest) -> JSONResponse:
    async def collect() -> tuple[str, Event | Failed]:
        parts: list[str] = []
        async for ev in job.inbox.events():
            if isinstance(ev, Failed):
                return "".join(parts), ev
            parts.append(ev.text)
            if ev.finish_reason is not None:
                return "".join(parts), ev
        raise AssertionError("unreachable: events end with a finish or Failed")

    result = asyncio.ensure_future(collect())
    gone = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not result.done():  # the client left (or we were cancelled): free the slot
            job.engine.cancel(job.ticket)
            result.cancel()
    if not result.done() or result.cancelled():
        return JSONResponse({}, status_code=499)
    text, end = result.result()
    if isinstance(end, Failed):
        raise APIError(500, end.message)
    assert end.usage is not None and end.timings is not None
    if job.kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "logprobs": None, "finish_reason": end.finish_reason}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": end.finish_reason}
        obj = "text_completion"
    return JSONResponse({"id": job.id, "object": obj, "created": job.created, "model": job.model_id,
                         "choices": [choice], "usage": usage(end.usage),
                         "timings": timings(end.usage, end.timings)})


async def _chunks(job: Job) -> AsyncIterator[bytes]:
    chat = job.kind == "chat"
    base = {"id": job.id, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": job.created, "model": job.model_id}
    if job.include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any] | str, finish: str | None = None, **extra: Any) -> bytes:
        key = "delta" if chat else "text"
        choice = {"index": 0, key: delta, "logprobs": None, "finish_reason": finish}
        return event({**base, "choices": [choice], **extra})

    if chat:
        yield chunk({"role": "assistant", "content": ""})
    async for ev in job.inbox.events():
        if isinstance(ev, Failed):
            yield event({"error": APIError(500, ev.message).body()["error"]})
            continue
        if ev.text:
            yield chunk({"content": ev.text} if chat else ev.text)
        if ev.finish_reason is not None:
            assert ev.usage is not None and ev.timings is not None
            yield chunk({} if chat else "", ev.finish_reason, timings=timings(ev.usage, ev.timings))
            if job.include_usage:
                yield event({**base, "choices": [], "usage": usage(ev.usage)})
    yield DONE
