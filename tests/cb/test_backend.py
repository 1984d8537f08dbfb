"""The OpenAI-compatible client: streaming, usage, and every failure as one line (scripted server).

Run: .venv/bin/python -m pytest tests/cb/test_backend.py -q
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from cb.backend import Backend, BackendError, ContextOverflow, Delta, Done, server_root
from tests.cb.scripted_server import Reply, ScriptedServer


def _collect(backend: Backend) -> tuple[str, Done]:
    text, done = "", None
    for event in backend.chat([{"role": "user", "content": "hi"}], max_tokens=32, temperature=0.0):
        if isinstance(event, Delta):
            text += event.text
        else:
            done = event
    assert done is not None
    return text, done


def test_stream_yields_pieces_then_usage_and_timing(scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(["Hel", "lo", " wor", "ld"]))
    with Backend(scripted.base_url, model="scripted") as b:
        text, done = _collect(b)
    assert text == "Hello world"
    assert done.finish_reason == "stop"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.cached_tokens) == (10, 4, 4)
    assert done.ttft_s is not None and done.ttft_s <= done.total_s
    body = scripted.requests[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "scripted" and body["max_tokens"] == 32


def test_api_key_is_sent_as_bearer(scripted: ScriptedServer) -> None:
    with Backend(scripted.base_url, api_key="sekrit", model="m") as b:
        _collect(b)
    assert scripted.requests[0]["headers"]["Authorization"] == "Bearer sekrit"


@pytest.mark.parametrize(("status", "needle"), [
    (401, "refused the API key"), (404, "not found"), (429, "busy"), (400, "answered 400: too long"),
    (500, "answered 500"),
])
def test_http_errors_become_one_line(scripted: ScriptedServer, status: int, needle: str) -> None:
    scripted.enqueue(Reply(status=status, error="too long\nsecond line", headers={"Retry-After": "2"}))
    with Backend(scripted.base_url, model="m") as b, pytest.raises(BackendError) as err:
        _collect(b)
    assert needle in str(err.value) and "\n" not in str(err.value)
    if status == 429:
        assert "retry in 2s" in str(err.value)


@pytest.mark.parametrize(("error", "counts"), [
    ({"code": 400, "message": "the request exceeds the available context size, try increasing it",  # llama.cpp
      "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}, (5000, 4096)),
    ({"message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 "
                 "tokens. Please reduce the length of the messages.", "type": "invalid_request_error",  # OpenAI
      "param": "messages", "code": "context_length_exceeded"}, (9000, 8192)),
    ({"message": "prompt too long", "code": "context_length_exceeded"}, (None, None)),
])
def test_a_context_overflow_carries_the_servers_counts(scripted: ScriptedServer, error: dict[str, object],
                                                       counts: tuple[int | None, int | None]) -> None:
    scripted.enqueue(Reply(status=400, body={"error": error}), Reply(status=400, error="bad temperature"))
    with Backend(scripted.base_url, model="m") as b:
        with pytest.raises(ContextOverflow) as err:
            _collect(b)
        assert (err.value.n_prompt_tokens, err.value.n_ctx) == counts
        assert str(err.value) == f"the server answered 400: {' '.join(str(error['message']).split())}"
        with pytest.raises(BackendError) as other:
            _collect(b)
        assert not isinstance(other.value, ContextOverflow)


def test_refused_connection_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Backend(f"http://127.0.0.1:{port}/v1") as b, pytest.raises(BackendError, match="cannot reach"):
        _collect(b)


def test_a_stalled_stream_times_out_with_a_hint(scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(["a", "b"], delay=1.5))
    with Backend(scripted.base_url, timeout=0.3) as b, pytest.raises(BackendError, match="did not answer in time"):
        _collect(b)


def test_malformed_chunk_is_reported(scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(raw=b"data: {not json\n\n"))
    with Backend(scripted.base_url) as b, pytest.raises(BackendError, match="malformed stream"):
        _collect(b)


def test_error_event_inside_the_stream_is_reported(scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(raw=b'data: {"error": {"message": "engine died"}}\n\n'))
    with Backend(scripted.base_url) as b, pytest.raises(BackendError, match="engine died"):
        _collect(b)


def test_closing_the_stream_early_closes_the_connection(scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply([str(i) for i in range(50)], delay=0.02))
    with Backend(scripted.base_url) as b:
        stream = b.chat([{"role": "user", "content": "x"}], max_tokens=8, temperature=0)
        assert isinstance(next(stream), Delta)
        stream.close()
        # the server notices on its next write; wait for it with a bound instead of sleeping blindly
        import time

        deadline = time.monotonic() + 5
        while scripted.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert scripted.disconnects == 1


def test_tokenize_counts_and_falls_back_to_an_estimate() -> None:
    with ScriptedServer() as s, Backend(s.base_url) as b:
        assert b.count_tokens("one two three") == 3 and b.exact_tokens
    with ScriptedServer(tokenize=False) as s, Backend(s.base_url) as b:
        assert b.count_tokens("x" * 40) == 10 and not b.exact_tokens


def test_models_and_context_length(scripted: ScriptedServer) -> None:
    with Backend(scripted.base_url, model="scripted") as b:
        assert [m["id"] for m in b.models()] == ["scripted"]
        assert b.context_length() == 4096
        assert b.health()


def test_server_root_strips_v1() -> None:
    assert server_root("http://h:1/v1/") == "http://h:1"
    assert server_root("http://h:1/api") == "http://h:1/api"


@contextlib.contextmanager
def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 in a thread; yields the base URL (…/v1)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_server_that_is_not_openai_compatible_is_named() -> None:
    class Html(_Quiet):
        def do_GET(self) -> None:
            self.reply(b"<html>hello</html>", "text/html")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.reply(b"<html>hello</html>", "text/html")

    with _serve(Html) as url, Backend(url) as b:
        with pytest.raises(BackendError, match="did not answer JSON"):
            b.models()
        assert b.count_tokens("x" * 8) == 2 and not b.exact_tokens
        with pytest.raises(BackendError, match="did not answer an event stream"):
            _collect(b)


def test_one_connection_serves_many_requests_and_a_dropped_idle_one_is_replaced() -> None:
    class Counting(_Quiet):
        seen: ClassVar[list[str]] = []

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.seen.append(f"{self.client_address[1]} {self.path}")
            self.reply(b'{"tokens": [1, 2]}')
            # the second request on a connection is answered, then the connection is dropped unannounced
            # (as a server does when its keep-alive timeout expires)
            self.close_connection = sum(s.startswith(f"{self.client_address[1]} ") for s in self.seen) == 2

    with _serve(Counting) as url, Backend(url) as b:
        assert [b.count_tokens(t) for t in ("a", "b", "c")] == [2, 2, 2]
    ports = [s.split()[0] for s in Counting.seen]
    assert ports[0] == ports[1] != ports[2] and Counting.seen[0].endswith(" /tokenize")


def test_a_stream_cut_mid_chunk_is_one_line() -> None:
    class Cut(_Quiet):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"40\r\ndata: {\"choices\": [")  # promises 64 bytes, sends 22, hangs up
            self.close_connection = True

    with _serve(Cut) as url, Backend(url) as b, pytest.raises(BackendError) as err:
        _collect(b)
    assert "closed the connection mid-answer" in str(err.value)


def test_proxy_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    class Proxy(_Quiet):
        seen: ClassVar[list[str]] = []

        def do_GET(self) -> None:
            self.seen.append(f"{self.path} {self.headers.get('Proxy-Authorization')}")
            self.reply(b'{"data": [{"id": "via-proxy"}]}')

    with _serve(Proxy) as proxy_url:
        proxy = proxy_url.removesuffix("/v1").replace("http://", "http://me:pw@")
        monkeypatch.setenv("HTTP_PROXY", proxy)
        with Backend("http://model.invalid:8080/v1") as b:
            assert b.use_served_model() == "via-proxy"
        assert Proxy.seen == ["http://model.invalid:8080/v1/models Basic bWU6cHc="]
        monkeypatch.setenv("NO_PROXY", "model.invalid")
        with Backend("http://model.invalid:8080/v1") as b, pytest.raises(BackendError, match="cannot reach"):
            b.models()


def test_a_base_url_without_a_scheme_is_named() -> None:
    with Backend("127.0.0.1:8080/v1") as b, pytest.raises(BackendError, match="must start with http://"):
        b.models()


@pytest.mark.parametrize(("body", "state"), [
    (b'{"status": "loading"}', ("loading", "")),
    (b'{"status": "error", "error": "bad\\nweights"}', ("error", "bad weights")),
    (b"<html>starting</html>", ("loading", "")),
    (b'{"status": "loading", "stage": "repacking m", "progress": 0.42, "amount": "470/1117 MB"}',
     ("loading", "repacking m 42% (470/1117 MB)")),
    (b'{"status": "loading", "stage": "building the kernels", "progress": null, "amount": ""}',
     ("loading", "building the kernels")),
])
def test_health_probe_reads_the_servers_state(body: bytes, state: tuple[str, str]) -> None:
    class Starting(_Quiet):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _serve(Starting) as url, Backend(url) as b:
        assert b.probe() == state and not b.health()
    with Backend(url) as b:  # the server is gone now
        assert b.probe() == ("down", "")


def test_the_start_spinner_shows_each_load_stage_the_server_reports(tmp_path) -> None:
    import subprocess

    from cb import server

    bodies = [b'{"status": "loading"}', b'{"status": "loading", "stage": "checking m", "progress": 0.5}',
              b'{"status": "loading", "stage": "repacking m", "progress": 0.25, "amount": "1/4 MB"}', b"ok"]

    class Loading(_Quiet):
        def do_GET(self) -> None:
            body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
            self.send_response(200 if body == b"ok" else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    shown: list[str] = []

    @contextlib.contextmanager
    def wait(text: str) -> Iterator[object]:
        shown.append(text)
        yield shown.append

    proc = subprocess.Popen(["sleep", "30"])
    try:
        with _serve(Loading) as url:
            info = server.ServerInfo(proc.pid, 0, "m", url, 0.0, str(tmp_path / "log"))
            assert server._wait_healthy(info, 30.0, wait, proc) is info
    finally:
        proc.kill()
        proc.wait()
    label = "starting the model server (m)…"
    assert shown == [label, f"{label} checking m 50%", f"{label} repacking m 25% (1/4 MB)"]
