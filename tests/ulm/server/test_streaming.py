"""SSE exactly as OpenAI sends it, over a real `ulm serve`: framing on the wire, the chunk contract (one id,
role first, finish_reason last, usage chunk, [DONE]), streamed == whole, concurrent streams equal to the
same requests run alone, no split UTF-8, and stop strings split across deltas (M7, M10, M14, M15).

Run: .venv/bin/python -m pytest tests/ulm/server/test_streaming.py -q
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.ulm.server.harness import API_KEY, Server, sse_events

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
PROMPTS = ["Tell me a story.", "What is two plus two?", "Name a colour.", "Write a haiku about rain."]


def chat_body(prompt: str, **kwargs: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": 16, "temperature": 0, **kwargs}


def stream(server: Server, body: dict[str, Any]) -> list[Any]:
    with server.client() as c:
        resp = c.post(CHAT, json={**body, "stream": True})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    return sse_events(resp.text)


def check_chunk_contract(events: list[Any], include_usage: bool) -> str:
    """Assert OpenAI's streaming contract; return the streamed text."""
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content = [c for c in chunks if c["choices"]]
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in content[1:])
    assert all(c["choices"][0]["finish_reason"] is None for c in content[:-1])
    assert content[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
        assert all(c["usage"] is None for c in content)
    else:
        assert all(c["choices"] for c in chunks)
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in content]
    assert all("\ufffd" not in d for d in deltas)
    return "".join(deltas)


def test_sse_framing_on_the_wire(server: Server) -> None:
    body = json.dumps({**chat_body("hi"), "stream": True}).encode()
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        t0 = time.monotonic()
        sock.sendall(head + body)
        data = sock.recv(65536)
        first_byte = time.monotonic() - t0
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 200")
    assert b"content-type: text/event-stream" in head_bytes.lower()
    assert b"transfer-encoding: chunked" in head_bytes.lower()
    text = b"".join(_dechunk(payload)).decode()
    blocks = text.split("\n\n")
    assert blocks[-1] == "" and blocks[-2] == "data: [DONE]"
    assert all(b.startswith("data: {") for b in blocks[:-2])
    assert first_byte < 5.0


def _dechunk(payload: bytes) -> list[bytes]:
    parts = []
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        parts.append(rest[:size])
        payload = rest[size + 2:]
    return parts


@pytest.mark.parametrize("include_usage", [False, True])
def test_chunk_contract_and_streamed_equals_whole(server: Server, include_usage: bool) -> None:
    body = chat_body(PROMPTS[0], temperature=0.9, seed=1234, stream_options={"include_usage": include_usage})
    streamed = check_chunk_contract(stream(server, body), include_usage)
    whole = server.post(CHAT, body).json()["choices"][0]["message"]["content"]
    assert streamed == whole


def test_text_completion_stream_equals_whole(server: Server) -> None:
    body = {"prompt": "The weather today", "max_tokens": 12, "temperature": 0.7, "seed": 5}
    whole = server.post("/v1/completions", body).json()["choices"][0]["text"]
    with server.client() as c:
        events = sse_events(c.post("/v1/completions", json={**body, "stream": True}).text)
    assert events[-1] == "[DONE]"
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == whole
    assert events[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_concurrent_streams_equal_the_same_requests_run_alone(server: Server) -> None:
    alone = [server.post(CHAT, chat_body(p)).json()["choices"][0]["message"]["content"] for p in PROMPTS]

    async def one(client: httpx.AsyncClient, prompt: str) -> str:
        resp = await client.post(CHAT, json={**chat_body(prompt), "stream": True,
                                             "stream_options": {"include_usage": True}})
        return check_chunk_contract(sse_events(resp.text), include_usage=True)

    async def run_all() -> list[str]:
        async with httpx.AsyncClient(base_url=server.base, headers=server.headers, timeout=60) as client:
            return await asyncio.gather(*(one(client, p) for p in PROMPTS))

    assert asyncio.run(run_all()) == alone


def test_stop_string_split_across_deltas_is_cut_exactly(server: Server) -> None:
    body = chat_body(PROMPTS[3], max_tokens=32)
    events = stream(server, body)
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in events[:-1] if c["choices"]]
    deltas = [d for d in deltas if d]
    full = "".join(deltas)
    # a stop made of the end of one delta and the start of the next, somewhere in the middle
    i = next(i for i in range(2, len(deltas) - 1) if len(deltas[i]) >= 2 and len(deltas[i + 1]) >= 1)
    stop = deltas[i][-2:] + deltas[i + 1][:1]
    expected = full[: full.index(stop)]
    for stream_it in (True, False):
        if stream_it:
            got = stream(server, {**body, "stop": [stop, "\x00never"]})
            pieces = [c["choices"][0]["delta"].get("content") or "" for c in got[:-1] if c["choices"]]
            emitted = ""
            for piece in pieces:
                emitted += piece
                assert expected.startswith(emitted)  # nothing ever sent is later withdrawn
            assert got[-2]["choices"][0]["finish_reason"] == "stop"
        else:
            reply = server.post(CHAT, {**body, "stop": [stop, "\x00never"]}).json()["choices"][0]
            emitted = reply["message"]["content"]
            assert reply["finish_reason"] == "stop"
        assert emitted == expected


def test_second_turn_reports_cached_prompt_tokens(server: Server) -> None:
    messages = [{"role": "user", "content": "Describe the sea in a few words."}]
    first = server.post(CHAT, {"messages": messages, "max_tokens": 8, "temperature": 0}).json()
    reply = first["choices"][0]["message"]["content"]
    follow = [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": "And the sky?"}]
    second = server.post(CHAT, {"messages": follow, "max_tokens": 8, "temperature": 0}).json()
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"] - 1
    assert second["timings"]["cache_n"] == cached
    assert second["timings"]["prompt_n"] == second["usage"]["prompt_tokens"] - cached
