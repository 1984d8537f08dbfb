"""Server test fixtures: real `ulm serve` processes on the tiny seeded model (start-up costs seconds, so
`server` is shared by the whole session and `slow_server` by its module).

- `server`: the setup of RELIABILITY.md §3.2: n_ctx 256, parallel 2, max-tokens cap 64, an API key, queue 4.
- `slow_server`: the same with a 40 ms debug delay per engine step, for deterministic cancellation,
  overload and shutdown tests.

Run: .venv/bin/python -m pytest tests/ulm/server -q
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ulm.server.harness import API_KEY, Server, start_server

BASE_ARGS = ["--ctx", "256", "--parallel", "2", "--max-tokens-cap", "64", "--queue", "4"]


@pytest.fixture(scope="session")
def server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(["--model", str(tiny_llama_dir), *BASE_ARGS],
                       tmp_path_factory.mktemp("serve") / "server.log", api_key=API_KEY)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def slow_server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(["--model", str(tiny_llama_dir), *BASE_ARGS, "--debug-token-delay-ms", "40",
                        "--prefill-chunk", "16"],
                       tmp_path_factory.mktemp("serve") / "slow.log", api_key=API_KEY)
    yield srv
    srv.stop()
