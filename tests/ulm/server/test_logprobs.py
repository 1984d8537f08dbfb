"""logprobs over a real `ulm serve`: chat's `logprobs`/`top_logprobs` and text completions' `logprobs: k`,
whole and streamed, consistent with the tokens chosen (greedy takes the most likely one) and with the text.

Run: .venv/bin/python -m pytest tests/ulm/server/test_logprobs.py -q
"""

from __future__ import annotations

import math

import pytest

from tests.ulm.server.harness import Server, sse_events

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
BODY = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12, "temperature": 0,
        "logprobs": True, "top_logprobs": 3}


def test_chat_logprobs_describe_the_greedy_tokens(server: Server) -> None:
    resp = server.post(CHAT, BODY)
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    entries = choice["logprobs"]["content"]
    assert len(entries) == resp.json()["usage"]["completion_tokens"] - (choice["finish_reason"] == "stop")
    for entry in entries:
        top = entry["top_logprobs"]
        assert len(top) == 3 and [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert entry["logprob"] <= 0 and math.isclose(entry["logprob"], top[0]["logprob"], abs_tol=1e-5)
        assert entry["bytes"] == top[0]["bytes"] == list(entry["token"].encode())
    assert b"".join(bytes(e["bytes"]) for e in entries).decode() == choice["message"]["content"]


def test_streamed_chat_logprobs_equal_the_whole_answers(server: Server) -> None:
    whole = server.post(CHAT, BODY).json()["choices"][0]["logprobs"]["content"]
    with server.client() as c:
        events = sse_events(c.post(CHAT, json={**BODY, "stream": True}).text)
    streamed = [entry for e in events[:-1] if e.get("choices") and e["choices"][0]["logprobs"]
                for entry in e["choices"][0]["logprobs"]["content"]]
    assert [e["token"] for e in streamed] == [e["token"] for e in whole]
    assert all(math.isclose(a["logprob"], b["logprob"], abs_tol=1e-5) for a, b in zip(streamed, whole, strict=True))


def test_text_completion_logprobs_line_up_with_the_text(server: Server) -> None:
    resp = server.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 10, "temperature": 0,
                                           "logprobs": 2})
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    lp = choice["logprobs"]
    assert "".join(lp["tokens"]) == choice["text"]
    assert lp["text_offset"] == [sum(map(len, lp["tokens"][:i])) for i in range(len(lp["tokens"]))]
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True):
        assert len(top) <= 2 and math.isclose(max(top.values()), logprob, abs_tol=1e-5) and token in top


def test_logprobs_are_absent_unless_asked(server: Server) -> None:
    body = {k: v for k, v in BODY.items() if k not in ("logprobs", "top_logprobs")}
    assert server.post(CHAT, body).json()["choices"][0]["logprobs"] is None


def test_top_logprobs_without_logprobs_is_a_400(server: Server) -> None:
    resp = server.post(CHAT, {**BODY, "logprobs": False})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "top_logprobs"
