"""`ulm bench serve` runs end to end against a real server and reports every figure (no speed asserted).

Run: .venv/bin/python -m pytest tests/ulm/server/test_bench_serve.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.ulm.server.harness import API_KEY, Server

pytestmark = pytest.mark.integration


def test_bench_serve_reports_levels_and_second_turn(server: Server) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ulm", "bench", "serve", "--url", server.base, "--api-key", API_KEY,
         "--clients", "1,2", "--requests", "1", "--max-tokens", "4", "--rounds", "2", "--repeats", "1",
         "--context", "120", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert set(results["levels"]) == {"1", "2"}
    assert results["rounds"] == 2
    for level in results["levels"].values():
        assert 0 < level["tokens"] <= 4 * level["requests"]
        assert level["tok_per_s"] > 0 and level["ttft_p50_ms"] > 0
        assert len(level["tok_per_s_rounds"]) == 2 and min(level["tok_per_s_rounds"]) <= level["tok_per_s"]
    assert results["second_turn"]["reuse_ttft_ms"] > 0 and results["second_turn"]["no_reuse_ttft_ms"] > 0
    assert results["second_turn"]["prompt_tokens"] > 120  # the sized system prompt, then the chat's turns


def test_bench_serve_says_when_no_server_answers() -> None:
    proc = subprocess.run([sys.executable, "-m", "ulm", "bench", "serve", "--url", "http://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "ulm bench serve: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_the_bench_client_streams_events_on_one_connection_and_reports_error_statuses(server: Server) -> None:
    import asyncio

    from ulm.bench.sse_client import SSEConnection, StreamError

    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True}

    async def talk() -> tuple[list[list[bytes]], str]:
        conn = SSEConnection(server.base, {"Authorization": f"Bearer {API_KEY}"})
        streams = [[data async for data in conn.events("/v1/chat/completions", body)] for _ in range(2)]
        await conn.close()
        stranger = SSEConnection(server.base, {"Authorization": "Bearer wrong"})
        try:
            async for _ in stranger.events("/v1/chat/completions", body):
                pass
        except StreamError as exc:
            return streams, str(exc)
        finally:
            await stranger.close()
        return streams, ""

    streams, refused = asyncio.run(talk())
    for events in streams:  # the second request reused the kept-alive connection
        assert events[-1] == b"[DONE]" and json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"
    assert refused.startswith("the server answered 401")


@pytest.mark.slow
def test_the_bench_client_reconnects_when_the_server_closed_its_idle_connection(server: Server) -> None:
    import asyncio

    from ulm.bench.sse_client import SSEConnection

    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "stream": True}

    async def talk() -> list[list[bytes]]:
        conn = SSEConnection(server.base, {"Authorization": f"Bearer {API_KEY}"})
        first = [data async for data in conn.events("/v1/chat/completions", body)]
        await asyncio.sleep(6.5)  # past the server's 5 s keep-alive: it closes the idle connection
        second = [data async for data in conn.events("/v1/chat/completions", body)]
        await conn.close()
        return [first, second]

    for events in asyncio.run(talk()):
        assert events[-1] == b"[DONE]"
