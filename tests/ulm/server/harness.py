"""A real `ulm serve` subprocess for tests: started on a free loopback port (`--port 0`, the port read from
its "listening on" line), waited for until /health says ok, stopped with SIGTERM; its stderr (the log)
goes to a file the tests can read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import stop_process

API_KEY = "test-key-3f9c1a77d2"
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll `cond` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    host: str
    port: int
    log_path: Path
    api_key: str | None = None
    stdout_lines: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=self.headers, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        with self.client() as c:
            return c.post(path, json=body, **kwargs)

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples of /metrics (gauges and counters), by name."""
        with self.client() as c:
            text = c.get("/metrics").text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.split()
                out[name] = float(value)
        return out

    def idle(self) -> bool:
        m = self.metrics()
        return m["ulm_slots_busy"] == 0 and m["ulm_queue_depth"] == 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        return stop_process(self.proc, timeout)


def start_server(args: list[str], log_path: Path, api_key: str | None = None, ready: bool = True,
                 timeout: float = 90.0, env: dict[str, str] | None = None) -> Server:
    """Start `ulm serve ARGS --port 0` and return once it listens (and, with ready, once /health is ok)."""
    cmd = [sys.executable, "-m", "ulm", "serve", "--port", "0", *args]
    if api_key:
        cmd += ["--api-key", api_key]
    log = log_path.open("w")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("ULM_API_KEY", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=full_env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = LISTENING.search(line)
    if not match:
        proc.kill()
        proc.wait()
        raise AssertionError(f"ulm serve did not start: {line!r}\n{log_path.read_text()}")
    server = Server(proc, match.group(1), int(match.group(2)), log_path, api_key, [line])
    if ready:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"ulm serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                return httpx.get(server.base + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=timeout, interval=0.1)
    return server


def sse_events(body: str) -> list[Any]:
    """The JSON payloads of an SSE body, with the final [DONE] as the string "[DONE]" (comments, such as the
    keep-alives of a waiting stream, skipped as clients skip them)."""
    events: list[Any] = []
    for block in body.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        assert block.startswith("data: "), f"not an SSE data event: {block!r}"
        payload = block[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
