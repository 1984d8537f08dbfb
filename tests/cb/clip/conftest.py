"""Fixtures for the clipboard bridge: a real redis-server with ACL users, listeners run in threads with
short test timings, and an Xvfb display for the real clipboard.

Run: .venv/bin/python -m pytest tests/cb/clip -q
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cb.clip.clipboard import ClipboardBackend, RecordingBackend
from cb.clip.config import ClipConfig, ListenTiming
from cb.clip.guard import Guard
from cb.clip.publish import Publisher
from cb.clip.subscriber import Listener
from tests.support.redis_server import PUB_PASS, PUB_USER, SUB_PASS, SUB_USER, RedisServer, wait_until
from tests.support.xvfb import Xvfb

# Half-open noticed within ping + pong = 1 s; reconnects start at 50 ms and cap at 0.4 s.
FAST = ListenTiming(ping_interval_s=0.4, pong_timeout_s=0.6, backoff_min_s=0.05, backoff_max_s=0.4)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def clip_key() -> bytes:
    return secrets.token_urlsafe(32).encode()


def make_cfg(url: str, key: bytes, **kw: object) -> ClipConfig:
    values: dict[str, object] = {"redis_url": url, "key": key, "sender": "box-test", "connect_timeout_s": 1.0}
    values.update(kw)
    return ClipConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def pub_cfg(redis_server: RedisServer, clip_key: bytes) -> ClipConfig:
    return make_cfg(redis_server.url(PUB_USER, PUB_PASS), clip_key)


@pytest.fixture
def sub_cfg(redis_server: RedisServer, clip_key: bytes) -> ClipConfig:
    return make_cfg(redis_server.url(SUB_USER, SUB_PASS), clip_key)


@pytest.fixture
def publisher(pub_cfg: ClipConfig, tmp_path: Path) -> Iterator[Publisher]:
    pub = Publisher(pub_cfg, seq_file=tmp_path / "seq")
    yield pub
    pub.close()


@dataclass
class RunningListener:
    """A Listener running in a thread, with the notices it printed."""

    listener: Listener
    thread: threading.Thread
    notices: list[tuple[str, str]] = field(default_factory=list)

    def lines(self, level: str | None = None) -> list[str]:
        return [line for lv, line in list(self.notices) if level is None or lv == level]

    def wait_notice(self, fragment: str, timeout_s: float = 5.0) -> bool:
        return wait_until(lambda: any(fragment in line for line in self.lines()), timeout_s)


@pytest.fixture
def run_listener(tmp_path: Path) -> Iterator:
    """Start listeners in threads: run_listener(cfg, backend, **kw) -> RunningListener (connected)."""
    started: list[RunningListener] = []

    def start(cfg: ClipConfig, backend: ClipboardBackend | None = None, timing: ListenTiming = FAST,
              wait_connected: bool = True, **kw: object) -> RunningListener:
        backend = backend or RecordingBackend()
        kw.setdefault("guard", Guard(cfg.require_key(), cfg.max_bytes, cfg.max_age_s,
                                     state_path=tmp_path / f"seen-{len(started)}.json"))
        notices: list[tuple[str, str]] = []
        listener = Listener(cfg, backend, timing=timing, notify=lambda lv, line: notices.append((lv, line)),
                            **kw)  # type: ignore[arg-type]
        thread = threading.Thread(target=listener.run, name="test-listener", daemon=True)
        running = RunningListener(listener, thread, notices)
        started.append(running)
        thread.start()
        if wait_connected:
            assert listener.connected.wait(10), f"listener did not connect: {notices}"
        return running

    yield start
    for running in started:
        running.listener.stop()
    for running in started:
        running.thread.join(10)
        assert not running.thread.is_alive(), "listener did not stop"


@pytest.fixture(scope="session")
def xvfb() -> Iterator[Xvfb]:
    display = Xvfb().start()
    yield display
    display.stop()
