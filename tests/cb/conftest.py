"""Fixtures for cb's tests: a scripted OpenAI-compatible server and a project dir cb runs in.

Run: .venv/bin/python -m pytest tests/cb -q
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cb.server import healthy
from tests.agentshell.conftest import RunningDaemon, tab_processes
from tests.cb.scripted_server import ScriptedServer
from tests.support.processes import stop_process


@pytest.fixture(autouse=True)
def no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """cb reads OPENAI_API_KEY / OPENAI_BASE_URL as fallbacks: the developer's own must not reach a test."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def daemon(cb_home: Path) -> Iterator[RunningDaemon]:
    """A real agentshell daemon in the test's CB_HOME; no tab process may outlive the test."""
    d = RunningDaemon(cb_home)
    yield d
    d.stop()
    assert not tab_processes(cb_home)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git-less project dir as cwd, with one small file."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "app.py").write_text("def area(r):\n    return 3.14 * r * r\n", encoding="utf-8")
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="session")
def tiny_model_2k(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer_dir: Path) -> Path:
    """The seeded tiny Llama with a 2,048-token context: room for cb's system prompt and edit instructions."""
    from tests.support.checkpoints import save_tiny_hf

    return save_tiny_hf(tmp_path_factory.mktemp("tiny_llama_2k"), "llama", tokenizer_dir=smollm2_tokenizer_dir,
                        max_position_embeddings=2048)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ulm_server(tmp_path_factory: pytest.TempPathFactory, tiny_model_2k: Path) -> Iterator[str]:
    """A real `ulm serve` on the tiny model (20 ms per engine step, so answers can be interrupted on cue);
    yields its base URL (…/v1)."""
    home = tmp_path_factory.mktemp("ulm_server_home")
    port = free_port()
    log = (home / "serve.log").open("wb")
    env = {**os.environ, "CB_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ulm", "serve", "--model", str(tiny_model_2k), "--port", str(port),
                             "--debug-token-delay-ms", "20", "--max-tokens-cap", "64"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 240
        while not healthy(base):
            assert proc.poll() is None, (home / "serve.log").read_text()
            assert time.monotonic() < deadline, "ulm serve did not become healthy"
            time.sleep(0.1)
        yield base
    finally:
        stop_process(proc, 10)
        log.close()
