"""The server's life: /health 503 while the model loads (and every model endpoint with it; with the load's
stage and fraction), a model that
fails to load exits 1 with a one-line reason, an engine fault mid-request (M13), and SIGTERM with streams
in flight: new connections refused, streams ended with a finish reason and [DONE], exit 0 within 5 s, no
child left (M16).

Run: .venv/bin/python -m pytest tests/ulm/server/test_lifecycle.py -q
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.ulm.server.harness import start_server, wait_for
from ulm import progress
from ulm.server.app import create_app
from ulm.server.settings import Settings
from ulm.server.state import ServerState

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAT = "/v1/chat/completions"
BODY = {"messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 64, "temperature": 0}


def test_a_model_that_fails_to_load_exits_1_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "broken-model"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "llama"}')
    srv = start_server(["--model", str(bad)], tmp_path / "log", ready=False)
    assert srv.proc.wait(60) == 1
    log = srv.log()
    assert "error: the model failed to load" in log
    assert "Traceback" not in log


def test_health_reports_the_load_stage_and_its_fraction_while_loading() -> None:
    from starlette.testclient import TestClient

    at_stage, go_on = threading.Event(), threading.Event()

    def load() -> object:
        with progress.stage("repacking tiny", total=4e6, unit="B") as step:
            step.update(1e6)
            at_stage.set()
            go_on.wait(30)
        raise RuntimeError("no weights after all")

    state = ServerState(Settings(), load_backend=load)  # type: ignore[arg-type]
    with TestClient(create_app(state)) as client:
        assert at_stage.wait(30)
        loading = client.get("/health")
        assert loading.status_code == 503
        assert loading.json() == {"status": "loading", "stage": "repacking tiny", "progress": 0.25,
                                  "amount": "1/4 MB"}
        go_on.set()
        wait_for(lambda: state.status == "error", timeout=30, interval=0.05)
        failed = client.get("/health").json()
    assert failed == {"status": "error", "error": "no weights after all"}  # the stage is gone with the load


def test_an_engine_fault_ends_the_stream_with_an_error_then_done(tiny_llama_dir: Path, tmp_path: Path) -> None:
    srv = start_server(["--model", str(tiny_llama_dir), "--debug-fail-at-token", "3", "--max-tokens-cap", "16"],
                       tmp_path / "log")
    try:
        with srv.client() as c:
            body = c.post(CHAT, json={**BODY, "stream": True}).text
            events = [b[len("data: "):] for b in body.split("\n\n") if b]
            assert events[-1] == "[DONE]"
            assert "Internal" in events[-2] or "internal" in json.loads(events[-2])["error"]["message"]
            assert json.loads(events[-2])["error"]["type"] == "server_error"
            whole = c.post(CHAT, json=BODY)
            assert whole.status_code == 500 and whole.json()["error"]["type"] == "server_error"
            assert c.get("/health").status_code == 200  # the engine recovered: only those requests failed
            short = c.post(CHAT, json={**BODY, "max_tokens": 2})
            assert short.status_code == 200
    finally:
        srv.stop()


def test_health_503_while_loading_then_sigterm_drains_streams_and_exits_0(tiny_llama_dir: Path,
                                                                          tmp_path: Path) -> None:
    srv = start_server(["--model", str(tiny_llama_dir), "--parallel", "3", "--debug-token-delay-ms", "50"],
                       tmp_path / "log", ready=False)
    first = httpx.get(srv.base + "/health", timeout=10)
    assert first.status_code == 503 and first.json()["status"] == "loading"
    busy = httpx.post(srv.base + CHAT, json=BODY, timeout=10)
    assert busy.status_code == 503 and busy.json()["error"]["type"] == "unavailable_error"
    wait_for(lambda: httpx.get(srv.base + "/health", timeout=10).status_code == 200, timeout=90, interval=0.1)
    children_before = psutil.Process(srv.proc.pid).children(recursive=True)
    results: list[list[str]] = [[] for _ in range(3)]
    started = threading.Barrier(4)

    def stream(i: int) -> None:
        with srv.client() as c, c.stream("POST", CHAT, json={**BODY, "stream": True}) as resp:
            lines = (ln for ln in resp.iter_lines() if ln.startswith("data: "))
            results[i].append(next(lines))
            started.wait(10)
            results[i].extend(lines)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    started.wait(30)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.TransportError):
        httpx.post(srv.base + CHAT, json=BODY, headers=srv.headers, timeout=2)
    assert srv.proc.wait(5) == 0
    assert time.monotonic() - t0 < 5.0
    for t in threads:
        t.join(5)
    for lines in results:
        assert lines[-1] == "data: [DONE]"
        final = json.loads(lines[-2][len("data: "):])
        assert final["choices"][0]["finish_reason"] in ("length", "stop")
    assert not [c for c in children_before if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_connections_to_the_server_send_without_nagle_delays() -> None:
    """With Nagle on, a response's last small write waits for the client's delayed ACK: 40 ms added to every
    request that follows another on a kept-alive connection (asyncio turns it off only for sockets created
    with proto IPPROTO_TCP; the listener passes TCP_NODELAY on to what it accepts)."""
    import socket

    from ulm.server.lifecycle import bind

    listener = bind("127.0.0.1", 0)
    with listener, socket.create_connection(listener.getsockname()) as client:
        conn, _ = listener.accept()
        with conn:
            assert listener.proto == conn.proto == socket.IPPROTO_TCP
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            client.sendall(b"x")
            assert conn.recv(1) == b"x"


def test_binding_a_port_in_use_is_one_clear_error() -> None:
    from ulm.server.lifecycle import bind
    from ulm.server.settings import ServeError

    with bind("127.0.0.1", 0) as taken, pytest.raises(ServeError, match=r"cannot listen on 127\.0\.0\.1"):
        bind("127.0.0.1", taken.getsockname()[1])
