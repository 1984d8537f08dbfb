"""API-key authentication: the matrix of wrong forms (401 before any work, also for stream: true), the
accepted forms, /health public, the key never in the log, and no non-loopback bind without a key
(M12, M18).

Run: .venv/bin/python -m pytest tests/ulm/server/test_auth.py -q
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.ulm.server.harness import API_KEY, Server

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": f"Bearer {API_KEY}x"},
    {"Authorization": f"Bearer {API_KEY[:-1]}"},
    {"Authorization": "Bearer"},
    {"Authorization": API_KEY},
    {"X-Api-Key": "wrong"},
])
@pytest.mark.parametrize("stream", [False, True])
def test_wrong_or_missing_key_is_401_before_any_work(server: Server, headers: dict, stream: bool) -> None:
    resp = httpx.post(server.base + CHAT, json={**BODY, "stream": stream}, headers=headers, timeout=10)
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"]["type"] == "authentication_error"


def test_key_in_the_query_string_is_not_accepted(server: Server) -> None:
    resp = httpx.post(f"{server.base}{CHAT}?api_key={API_KEY}", json=BODY, timeout=10)
    assert resp.status_code == 401


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {API_KEY}"},
    {"Authorization": f"bearer {API_KEY}"},
    {"Authorization": f"BEARER {API_KEY}"},
    {"X-Api-Key": API_KEY},
])
def test_accepted_key_forms(server: Server, headers: dict) -> None:
    assert httpx.post(server.base + CHAT, json=BODY, headers=headers, timeout=30).status_code == 200


@pytest.mark.parametrize("path", ["/v1/models", "/metrics", "/tokenize", "/detokenize", "/v1/completions"])
def test_every_endpoint_but_health_needs_the_key(server: Server, path: str) -> None:
    method = "GET" if path in ("/v1/models", "/metrics") else "POST"
    assert httpx.request(method, server.base + path, json={}, timeout=10).status_code == 401


def test_health_is_public_and_preflight_is_not_challenged(server: Server) -> None:
    assert httpx.get(server.base + "/health", timeout=10).json() == {"status": "ok"}
    preflight = httpx.options(server.base + CHAT, timeout=10,
                              headers={"Origin": "http://x", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code != 401


def test_a_huge_header_is_refused_without_a_5xx(server: Server) -> None:
    try:
        resp = httpx.post(server.base + CHAT, json=BODY, timeout=10,
                          headers={"Authorization": f"Bearer {API_KEY}", "X-Big": "a" * 65536})
    except httpx.RemoteProtocolError:
        return  # the server closed the connection on the oversized head: also a refusal
    assert resp.status_code == 431
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_the_key_never_appears_in_the_log(server: Server) -> None:
    httpx.post(f"{server.base}{CHAT}?api_key={API_KEY}", json=BODY, timeout=10)
    httpx.post(server.base + CHAT, json=BODY, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    httpx.post(server.base + CHAT, json=BODY, headers={"Authorization": f"Bearer {API_KEY}x"}, timeout=10)
    log = server.log()
    assert "POST /v1/chat/completions 401" in log  # the access log is there...
    assert API_KEY not in log  # ...but never the key, not even from a query string


def test_non_loopback_bind_without_a_key_is_refused() -> None:
    proc = subprocess.run([sys.executable, "-m", "ulm", "serve", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in proc.stderr
    assert "Traceback" not in proc.stderr
