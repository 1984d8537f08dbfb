"""SSE keep-alive: a streaming client with a 10 s read timeout survives a 30 s prefill, over a real `ulm serve`.

How the 30 s arise: the server runs with the debug step delay (`--debug-token-delay-ms 1000`: the engine
sleeps 1 s after every forward, standing for a slow one) and `--prefill-chunk 8`, and the prompt is 240 token
ids, so its prefill takes 30 engine steps, at least 30 s; with max_tokens 1 the first sampled token ends it.
Between the stream's first chunk (the assistant role, sent at once) and the token no data event comes for
those 30 s: only the `: keep-alive` comments keep the client's read timeout from firing.

Run: .venv/bin/python -m pytest tests/ulm/server/test_keepalive.py -q
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ulm.server.harness import API_KEY, Server, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMPT_TOKENS = 240
PREFILL_CHUNK = 8
STEP_DELAY_MS = 1000  # 240 / 8 = 30 steps of at least 1 s each
READ_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def crawling_server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(["--model", str(tiny_llama_dir), "--ctx", "512", "--parallel", "1",
                        "--debug-token-delay-ms", str(STEP_DELAY_MS), "--prefill-chunk", str(PREFILL_CHUNK)],
                       tmp_path_factory.mktemp("serve") / "crawl.log", api_key=API_KEY)
    yield srv
    srv.stop()


def test_a_10s_read_timeout_survives_a_30s_prefill(crawling_server: Server) -> None:
    body = {"prompt": list(range(1000, 1000 + PROMPT_TOKENS)), "max_tokens": 1, "temperature": 0, "stream": True}
    arrivals: list[tuple[float, str]] = []  # (seconds since the request, the SSE block)
    timeout = httpx.Timeout(READ_TIMEOUT_S)
    with httpx.Client(base_url=crawling_server.base, headers=crawling_server.headers, timeout=timeout) as c:
        t0 = time.monotonic()
        with c.stream("POST", "/v1/completions", json=body) as resp:
            assert resp.status_code == 200
            buffer = ""
            for text in resp.iter_text():
                buffer += text
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    arrivals.append((time.monotonic() - t0, block))
    elapsed = time.monotonic() - t0
    blocks = [b for _, b in arrivals]
    assert blocks[-1] == "data: [DONE]"
    finish = json.loads(blocks[-2].removeprefix("data: "))
    assert finish["choices"][0]["finish_reason"] in ("stop", "length")
    assert elapsed >= 30 * STEP_DELAY_MS / 1000 - 1  # the prefill really was that long
    data_times = [t for t, b in arrivals if b.startswith("data: ")]
    gaps = [b - a for a, b in zip([0.0, *data_times], data_times, strict=False)]
    assert max(gaps) > READ_TIMEOUT_S  # without the comments this client would have timed out
    keepalives = [t for t, b in arrivals if b == ": keep-alive"]
    assert len(keepalives) >= 4
    every = [t for t, _ in arrivals]
    assert max(b - a for a, b in zip([0.0, *every], every, strict=False)) < READ_TIMEOUT_S
