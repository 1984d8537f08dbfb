"""/metrics in Prometheus text format: request counts by endpoint and status, token counters, TTFT and
per-token latency histograms, queue depth and slot gauges.

Run: .venv/bin/python -m pytest tests/ulm/server/test_metrics.py -q
"""

from __future__ import annotations

import re

import pytest

from tests.ulm.server.harness import Server

pytestmark = pytest.mark.integration


def scrape(server: Server) -> str:
    with server.client() as c:
        resp = c.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return resp.text


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_metrics_count_requests_tokens_and_latencies(server: Server) -> None:
    before = scrape(server)
    ok = server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
                                              "temperature": 0}).json()
    server.post("/v1/chat/completions", {"messages": "bad"})
    after = scrape(server)
    assert 'ulm_requests_total{endpoint="/v1/chat/completions",status="200"}' in after
    assert 'ulm_requests_total{endpoint="/v1/chat/completions",status="400"}' in after
    generated = sample(after, "ulm_generated_tokens_total") - sample(before, "ulm_generated_tokens_total")
    assert generated == ok["usage"]["completion_tokens"]
    assert sample(after, "ulm_prompt_tokens_total") - sample(before, "ulm_prompt_tokens_total") == \
        ok["usage"]["prompt_tokens"]
    assert sample(after, "ulm_time_to_first_token_seconds_count") == \
        sample(before, "ulm_time_to_first_token_seconds_count") + 1
    assert sample(after, "ulm_token_latency_seconds_count") >= sample(before, "ulm_token_latency_seconds_count")
    for gauge in ("ulm_queue_depth", "ulm_slots_busy", "ulm_slots_total", "ulm_ready", "ulm_engine_steps_total"):
        assert f"# TYPE {gauge} " in after
    assert sample(after, "ulm_slots_total") == 2 and sample(after, "ulm_ready") == 1
    buckets = [float(v) for v in re.findall(r'^ulm_time_to_first_token_seconds_bucket\{le="[^"]+"\} (\S+)$', after,
                                            re.M)]
    assert buckets == sorted(buckets)  # cumulative
