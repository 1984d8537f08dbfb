"""Bad input never gets a 5xx: malformed and non-object bodies, schema violations, content type, oversized
and deeply nested bodies, context overflow at its exact boundary (also when streaming, before any SSE
byte), and max_tokens validation and capping (RELIABILITY.md M1–M6).

Run: .venv/bin/python -m pytest tests/ulm/server/test_errors.py -q
"""

from __future__ import annotations

import socket
from typing import Any

import psutil
import pytest

from tests.ulm.server.harness import API_KEY, Server

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


def assert_error(resp: Any, status: int, type_: str = "invalid_request_error", param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err)
    assert err["message"] and err["type"] == type_
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize("raw", [b'{"messages": [', b'"x"', b"[1]", b"42", b"null", b"", b"\xff\xfe",
                                 b'{"messages": NaN}'])
def test_malformed_or_non_object_json_is_400(server: Server, raw: bytes) -> None:
    with server.client() as c:
        resp = c.post(CHAT, content=raw, headers={"Content-Type": "application/json"})
    assert_error(resp, 400)


@pytest.mark.parametrize(("body", "param"), [
    ({}, "messages"),
    ({"messages": "string"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [123]}, "messages[0]"),
    ({"messages": [{}]}, "messages[0].role"),
    ({"messages": [{"role": 123, "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 123}]}, "messages[0].content"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": MSG, "temperature": "hot"}, "temperature"),
    ({"messages": MSG, "temperature": -1}, "temperature"),
    ({"messages": MSG, "top_p": 0}, "top_p"),
    ({"messages": MSG, "n": 0}, "n"),
    ({"messages": MSG, "n": 2}, "n"),
    ({"messages": MSG, "stream": "yes"}, "stream"),
    ({"messages": MSG, "stop": ""}, "stop"),
    ({"messages": MSG, "stop": [1]}, "stop"),
    ({"messages": MSG, "seed": 1.5}, "seed"),
    ({"messages": MSG, "stream_options": {"include_usage": "no"}}, "stream_options.include_usage"),
])
def test_schema_violations_are_400_naming_the_field(server: Server, body: dict, param: str) -> None:
    err = assert_error(server.post(CHAT, body), 400)
    assert err["param"] is not None and err["param"].startswith(param)


def test_unknown_model_is_404(server: Server) -> None:
    err = assert_error(server.post(CHAT, {"model": "gpt-5", "messages": MSG}), 404, "not_found_error", "model")
    assert "gpt-5" in err["message"]


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"])
def test_wrong_content_type_is_400(server: Server, ctype: str) -> None:
    with server.client() as c:
        resp = c.post(CHAT, content=b'{"messages": [{"role": "user", "content": "hi"}]}',
                      headers={"Content-Type": ctype})
    assert_error(resp, 400, param="Content-Type")


def raw_request(server: Server, head: str, body: bytes = b"", read: int = 65536) -> bytes:
    """Send raw bytes; return what the server answers (up to `read` bytes or until it closes)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while len(data) < read:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and (b"data: [DONE]" in data or b"content-length" in data.lower()):
                head_end = data.index(b"\r\n\r\n") + 4
                length = [int(line.split(b":")[1]) for line in data[:head_end].lower().split(b"\r\n")
                          if line.startswith(b"content-length:")]
                if length and len(data) >= head_end + length[0]:
                    break
        return data


def test_oversized_body_is_413_before_it_is_read(server: Server) -> None:
    rss_before = psutil.Process(server.proc.pid).memory_info().rss
    size = 20 * 2**20
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n")
    answer = raw_request(server, head, b'{"messages": ')  # the rest of the 20 MiB is never sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"invalid_request_error" in answer
    assert psutil.Process(server.proc.pid).memory_info().rss - rss_before < 8 * 2**20


def test_deeply_nested_json_is_400(server: Server) -> None:
    deep = b'{"messages": ' + b"[" * 10000 + b"]" * 10000 + b"}"
    with server.client() as c:
        resp = c.post(CHAT, content=deep, headers={"Content-Type": "application/json"})
    assert_error(resp, 400)


def prompt_of(server: Server, n_tokens: int) -> list[int]:
    """A token-id prompt of exactly n tokens (ids of ordinary words)."""
    ids = server.post("/tokenize", {"content": "hello world " * n_tokens}).json()["tokens"]
    assert len(ids) >= n_tokens
    return ids[:n_tokens]


def test_context_boundary_one_short_is_served_full_is_refused(server: Server) -> None:
    ok = server.post("/v1/completions", {"prompt": prompt_of(server, 255), "max_tokens": 1, "temperature": 0})
    assert ok.status_code == 200, ok.text
    assert ok.json()["usage"]["completion_tokens"] == 1
    for n in (256, 2560):
        err = assert_error(server.post("/v1/completions", {"prompt": prompt_of(server, n), "max_tokens": 1}), 400,
                           "exceed_context_size_error")
        assert (err["n_prompt_tokens"], err["n_ctx"]) == (n, 256)


def test_context_overflow_when_streaming_is_a_400_before_any_sse_byte(server: Server) -> None:
    import json

    body = json.dumps({"messages": [{"role": "user", "content": "word " * 400}], "stream": True}).encode()
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    answer = raw_request(server, head, body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"data:" not in answer
    assert b"exceed_context_size_error" in answer and b'"n_ctx":256' in answer


def test_prompt_plus_max_tokens_over_the_context_stops_at_the_context_end(server: Server) -> None:
    """Policy: the prompt must leave room for one token; generation then stops where the context ends,
    with finish_reason "length" (llama.cpp's choice), however large max_tokens is."""
    resp = server.post("/v1/completions", {"prompt": prompt_of(server, 250), "max_tokens": 50, "temperature": 0})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["usage"]["completion_tokens"] <= 6
    if body["usage"]["completion_tokens"] == 6:
        assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["total_tokens"] <= 256


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True, None])
def test_invalid_max_tokens_is_400_and_null_means_the_cap(server: Server, value: Any) -> None:
    resp = server.post(CHAT, {"messages": MSG, "max_tokens": value, "temperature": 0})
    if value is None:
        assert resp.status_code == 200
        assert resp.json()["usage"]["completion_tokens"] <= 64
    else:
        assert_error(resp, 400, param="max_tokens")


@pytest.mark.parametrize("body", [{}, {"max_tokens": 10**12}, {"max_completion_tokens": 10**12}])
def test_absent_or_huge_max_tokens_is_clamped_to_the_server_cap(server: Server, body: dict) -> None:
    ids = prompt_of(server, 8)
    resp = server.post("/v1/completions", {"prompt": ids, "temperature": 0, "frequency_penalty": 2.0, **body})
    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]
    assert usage["completion_tokens"] <= 64
    if usage["completion_tokens"] == 64:
        assert resp.json()["choices"][0]["finish_reason"] == "length"


def test_out_of_vocabulary_token_ids_are_400(server: Server) -> None:
    assert_error(server.post("/v1/completions", {"prompt": [1, 2, 10**6]}), 400, param="prompt")
    assert_error(server.post("/v1/completions", {"prompt": [-3]}), 400)
    assert_error(server.post("/v1/completions", {"prompt": []}), 400)
    assert_error(server.post("/detokenize", {"tokens": [10**6]}), 400, param="tokens")


def test_tokenize_and_detokenize_round_trip(server: Server) -> None:
    ids = server.post("/tokenize", {"content": "Hello, wörld 🙂"}).json()["tokens"]
    assert ids and all(isinstance(t, int) for t in ids)
    assert server.post("/detokenize", {"tokens": ids}).json()["content"] == "Hello, wörld 🙂"


def test_unknown_path_and_wrong_method_are_openai_shaped(server: Server) -> None:
    with server.client() as c:
        assert_error(c.get("/v1/nothing"), 404, "not_found_error")
        assert_error(c.get(CHAT), 405)


def test_streaming_error_status_codes_come_before_sse(server: Server) -> None:
    with server.client() as c:
        resp = c.post(CHAT, json={"model": "nope", "messages": MSG, "stream": True})
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/json")
