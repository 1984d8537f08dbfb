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
         "--clients", "1,2", "--requests", "1", "--max-tokens", "4", "--repeats", "1", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert set(results["levels"]) == {"1", "2"}
    for level in results["levels"].values():
        assert 0 < level["tokens"] <= 4 * level["requests"]
        assert level["tok_per_s"] > 0 and level["ttft_p50_ms"] > 0
    assert results["second_turn"]["reuse_ttft_ms"] > 0 and results["second_turn"]["no_reuse_ttft_ms"] > 0


def test_bench_serve_says_when_no_server_answers() -> None:
    proc = subprocess.run([sys.executable, "-m", "ulm", "bench", "serve", "--url", "http://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "ulm bench serve: error:" in proc.stderr and "Traceback" not in proc.stderr
