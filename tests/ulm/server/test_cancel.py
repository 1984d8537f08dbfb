"""A client that goes away frees its slot within one engine step: mid-stream, during prefill, while queued,
and for a non-streaming request; mass cancellation leaves the server responsive; a full queue answers 429
with Retry-After at once (M8, M9, M11). The server runs with a 40 ms debug delay per engine step.

Run: .venv/bin/python -m pytest tests/ulm/server/test_cancel.py -q
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.ulm.server.harness import Server, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAT = "/v1/chat/completions"
STEP = 0.04  # the server's --debug-token-delay-ms


def long_chat(**kwargs: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Talk for a long time."}], "max_tokens": 64,
            "temperature": 0, "stream": True, **kwargs}


def open_stream(client: httpx.Client, body: dict[str, Any]) -> tuple[Any, Any]:
    cm = client.stream("POST", CHAT, json=body)
    resp = cm.__enter__()
    assert resp.status_code == 200
    return cm, resp.iter_lines()


def assert_freed_and_quiet(server: Server) -> None:
    """Idle within ~one step (1 s budget on this shared box), and the engine stops stepping."""
    wait_for(server.idle, timeout=1.0)
    steps = server.metrics()["ulm_engine_steps_total"]
    time.sleep(3 * STEP)
    assert server.metrics()["ulm_engine_steps_total"] == steps


def test_disconnect_mid_stream_frees_the_slot(slow_server: Server) -> None:
    with slow_server.client() as client:
        cm, lines = open_stream(client, long_chat())
        seen = [line for line, _ in zip((ln for ln in lines if ln.startswith("data:")), range(3), strict=False)]
        assert len(seen) == 3
        assert slow_server.metrics()["ulm_slots_busy"] == 1
        cm.__exit__(None, None, None)
    assert_freed_and_quiet(slow_server)


def test_disconnect_during_prefill_frees_the_slot(slow_server: Server) -> None:
    """A ~200-token prompt prefilled 16 tokens per 40 ms step: the client leaves ~150 ms into the prefill."""
    body = long_chat(messages=[{"role": "user", "content": "many words " * 90}])
    with (httpx.Client(base_url=slow_server.base, headers=slow_server.headers, timeout=0.15) as client,
          pytest.raises(httpx.TimeoutException),
          client.stream("POST", CHAT, json={**body, "stream": False}) as resp):
        resp.read()
    assert_freed_and_quiet(slow_server)


def test_disconnect_while_queued_leaves_the_queue(slow_server: Server) -> None:
    with slow_server.client() as c1, slow_server.client() as c2, slow_server.client() as c3:
        busy = [open_stream(c, long_chat()) for c in (c1, c2)]
        for _, lines in busy:
            next(ln for ln in lines if ln.startswith("data:"))
        cm, _ = open_stream(c3, long_chat())
        wait_for(lambda: slow_server.metrics()["ulm_queue_depth"] == 1, timeout=2.0)
        cm.__exit__(None, None, None)
        wait_for(lambda: slow_server.metrics()["ulm_queue_depth"] == 0, timeout=1.0)
        assert slow_server.metrics()["ulm_slots_busy"] == 2  # the others run on
        for cm_busy, _ in busy:
            cm_busy.__exit__(None, None, None)
    assert_freed_and_quiet(slow_server)


def test_non_streaming_client_timeout_frees_the_slot_and_the_next_request_is_served(slow_server: Server) -> None:
    with (httpx.Client(base_url=slow_server.base, headers=slow_server.headers, timeout=0.5) as client,
          pytest.raises(httpx.TimeoutException)):
        client.post(CHAT, json={**long_chat(), "stream": False})
    assert_freed_and_quiet(slow_server)
    with slow_server.client() as client:
        t0 = time.monotonic()
        with client.stream("POST", CHAT, json=long_chat(max_tokens=2)) as resp:
            first = next(ln for ln in resp.iter_lines() if '"content":"' in ln and '"content":""' not in ln)
            assert first and time.monotonic() - t0 < 1.0


def test_mass_cancellation_leaves_the_server_responsive(slow_server: Server) -> None:
    async def one(client: httpx.AsyncClient) -> str:
        try:
            resp = await client.post(CHAT, json={**long_chat(), "stream": False}, timeout=0.3)
        except httpx.TimeoutException:
            return "timeout"
        return str(resp.status_code)

    async def burst() -> list[str]:
        async with httpx.AsyncClient(base_url=slow_server.base, headers=slow_server.headers) as client:
            return await asyncio.gather(*(one(client) for _ in range(50)))

    outcomes = asyncio.run(burst())
    assert set(outcomes) <= {"timeout", "429"}, outcomes
    assert "timeout" in outcomes
    wait_for(slow_server.idle, timeout=2.0)
    t0 = time.monotonic()
    resp = slow_server.post(CHAT, {**long_chat(max_tokens=10), "stream": False})
    assert resp.status_code == 200 and time.monotonic() - t0 < 5.0


def test_full_queue_answers_429_with_retry_after_at_once(slow_server: Server) -> None:
    async def one(client: httpx.AsyncClient) -> tuple[int, float, str | None]:
        t0 = time.monotonic()
        resp = await client.post(CHAT, json={**long_chat(max_tokens=8), "stream": False})
        return resp.status_code, time.monotonic() - t0, resp.headers.get("retry-after")

    async def burst() -> list[tuple[int, float, str | None]]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=slow_server.base, headers=slow_server.headers, timeout=60,
                                     limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(20)))

    results = asyncio.run(burst())
    codes = [code for code, _, _ in results]
    assert set(codes) <= {200, 429}
    assert codes.count(200) >= 4  # at least the queue of 4 (the slots take theirs at the next engine step)
    rejected = [(t, ra) for code, t, ra in results if code == 429]
    assert rejected
    assert all(ra is not None and int(ra) >= 1 for _, ra in rejected)
    assert max(t for t, _ in rejected) < 1.0  # answered at once, not after waiting for a slot
    wait_for(slow_server.idle, timeout=5.0)
