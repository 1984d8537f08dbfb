"""`cb copy` and `cb clip listen|status|test|bench` as real processes: the real clipboard on an Xvfb display
read back with `xclip -o`, real clipboard-tool failures (R11), a stopped listener flooded past Redis's
output-buffer limit (R5), and the status/test/bench commands.

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_cli.py -q
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cb.cli import app
from tests.support.redis_server import PUB_PASS, PUB_USER, SUB_PASS, SUB_USER, RedisServer, wait_until
from tests.support.xvfb import Xvfb, read_clipboard

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
FAST_FLAGS = ["--ping-interval", "0.5", "--pong-timeout", "1", "--backoff-max", "0.5"]


class CbProcess:
    """A `cb ...` subprocess in its own session; its stdout and stderr lines are collected by threads."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "cb", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=ROOT, start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._collect, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _collect(stream, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_line(self, fragment: str, timeout_s: float = 20, err: bool = False) -> bool:
        lines = self.err if err else self.out
        return wait_until(lambda: any(fragment in line for line in list(lines)), timeout_s)

    def stop(self) -> None:
        """End the whole process group (the listener and any clipboard tool it started)."""
        if self.proc.poll() is None:
            with _suppress():
                os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError)


@pytest.fixture
def env_for(redis_server: RedisServer, clip_key: bytes):
    def make(user: str, password: str, **extra: str) -> dict[str, str]:
        env = {**os.environ, "CB_REDIS_URL": redis_server.url(user, password), "CB_CLIP_KEY": clip_key.decode()}
        env.update(extra)
        return env
    return make


@pytest.fixture
def processes() -> Iterator[list[CbProcess]]:
    started: list[CbProcess] = []
    yield started
    for p in started:
        p.stop()


def _copy(env: dict[str, str], text: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "cb", "copy"], input=text.encode(), capture_output=True, env=env,
                          cwd=ROOT, timeout=30)


@pytest.mark.slow
def test_copy_on_the_box_lands_in_the_real_clipboard(xvfb: Xvfb, env_for, processes) -> None:
    listener = CbProcess(["clip", "listen", "--once", "--timeout", "30", *FAST_FLAGS],
                         env_for(SUB_USER, SUB_PASS, DISPLAY=xvfb.display))
    processes.append(listener)
    assert listener.wait_line("listening on"), listener.err
    payload = "git push --force\x1b[201~\nrm -rf ~\n"
    copied = _copy(env_for(PUB_USER, PUB_PASS), payload)
    assert copied.returncode == 0, copied.stderr
    assert b"via Redis to 1 listener" in copied.stderr
    assert listener.proc.wait(20) == 0, listener.err
    assert read_clipboard(xvfb.display) == "git push --force\nrm -rf ~"
    notice = next(line for line in listener.out if "clipboard <- " in line)
    assert "'git push --force' (2 lines" in notice and "removed 6 control/escape characters" in notice


def test_missing_clipboard_tool_is_reported_and_the_listener_keeps_running(env_for, processes,
                                                                           tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = env_for(SUB_USER, SUB_PASS, PATH=str(empty_bin), DISPLAY=":4242")
    env.pop("WAYLAND_DISPLAY", None)
    listener = CbProcess(["clip", "listen", *FAST_FLAGS], env)
    processes.append(listener)
    assert listener.wait_line("listening on"), listener.err
    for n in (1, 2):
        assert _copy(env_for(PUB_USER, PUB_PASS), f"clip {n}").returncode == 0
        assert wait_until(lambda n=n: sum("clipboard not set" in line for line in list(listener.err)) == n, 20), \
            listener.err
    assert listener.proc.poll() is None


@pytest.mark.slow
def test_hanging_clipboard_tool_times_out_and_the_listener_keeps_running(xvfb: Xvfb, env_for, processes,
                                                                         tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    hang = fake_bin / "xclip"
    hang.write_text("#!/bin/sh\nexec sleep 20\n")
    hang.chmod(0o755)
    env = env_for(SUB_USER, SUB_PASS, PATH=f"{fake_bin}:{os.environ['PATH']}", DISPLAY=xvfb.display)
    env.pop("WAYLAND_DISPLAY", None)
    listener = CbProcess(["clip", "listen", "--clipboard-timeout", "0.5", *FAST_FLAGS], env)
    processes.append(listener)
    assert listener.wait_line("listening on"), listener.err
    assert _copy(env_for(PUB_USER, PUB_PASS), "stuck").returncode == 0
    assert listener.wait_line("did not finish copy within 0.5 s", err=True), listener.err
    assert _copy(env_for(PUB_USER, PUB_PASS), "next").returncode == 0
    assert wait_until(lambda: sum("clipboard not set" in line for line in list(listener.err)) == 2, 20)
    assert listener.proc.poll() is None


@pytest.mark.slow
def test_r5_stopped_listener_is_cut_off_and_does_not_replay_the_flood(redis_server: RedisServer, env_for,
                                                                       processes) -> None:
    admin = redis_server.admin()
    admin.config_set("client-output-buffer-limit", "pubsub 1mb 512kb 5")
    listener = CbProcess(["clip", "listen", "--stdout", *FAST_FLAGS],
                         env_for(SUB_USER, SUB_PASS, CB_CLIP_STREAM_LEN="3"))
    processes.append(listener)
    assert listener.wait_line("listening on", err=True), listener.err
    os.kill(listener.proc.pid, signal.SIGSTOP)
    pub_env = env_for(PUB_USER, PUB_PASS, CB_CLIP_STREAM_LEN="3")
    from cb.clip.config import load_config
    from cb.clip.publish import Publisher

    cfg = load_config({k: v for k, v in pub_env.items() if k.startswith("CB_")}, need_sender=True)
    pub = Publisher(cfg)
    body = "y" * ((1 << 20) - 64)
    for i in range(50):
        pub.publish(f"flood {i:02d} {body}")
    pub.close()
    assert wait_until(lambda: not admin.client_list(_type="pubsub"), 10), "Redis did not cut the stalled listener"
    assert admin.xlen("clipboard:stream") < 50  # the capped stream stays small
    os.kill(listener.proc.pid, signal.SIGCONT)
    assert listener.wait_line("flood 49", timeout_s=20), listener.err[-5:]
    time.sleep(0.5)  # let anything still in flight arrive before counting
    clips = [line[:8] for line in listener.out if line.startswith("flood ")]
    # Whatever was still in the socket buffer comes in one read and is applied newest-only, then the stream
    # catch-up applies the newest: at most two writes for fifty clips, never the burst.
    assert 1 <= len(clips) <= 2 and clips[-1] == "flood 49", clips
    assert listener.proc.poll() is None


def test_status_reports_settings_and_redis(redis_server: RedisServer, clip_key: bytes,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_REDIS_URL", redis_server.url(SUB_USER, SUB_PASS))
    monkeypatch.setenv("CB_CLIP_KEY", clip_key.decode())
    result = CliRunner().invoke(app, ["clip", "status"])
    assert result.exit_code == 0, result.output
    assert "clip_sub:***@" in result.stdout and SUB_PASS not in result.stdout
    assert "connection     ok" in result.stdout and "fingerprint" in result.stdout
    assert "newest clip    none in the stream" in result.stdout


def test_status_fails_when_redis_is_down(clip_key: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.redis_server import free_port

    monkeypatch.setenv("CB_REDIS_URL", f"redis://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CB_CLIP_KEY", clip_key.decode())
    result = CliRunner().invoke(app, ["clip", "status"])
    assert result.exit_code == 1 and "FAILED: cannot reach Redis" in result.stdout


def test_clip_test_times_the_round_trip(redis_server: RedisServer, clip_key: bytes,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_CLIP_KEY", clip_key.decode())
    monkeypatch.setenv("CB_REDIS_URL", redis_server.url())  # the admin user may publish and subscribe
    result = CliRunner().invoke(app, ["clip", "test"])
    assert result.exit_code == 0, result.output
    assert "came back verified in" in result.stdout
    monkeypatch.setenv("CB_REDIS_URL", redis_server.url(PUB_USER, PUB_PASS))
    result = CliRunner().invoke(app, ["clip", "test"])
    assert result.exit_code == 0 and "may not SUBSCRIBE" in result.stdout


def test_copy_without_key_says_how_to_make_one(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_REDIS_URL", redis_server.url(PUB_USER, PUB_PASS))
    monkeypatch.delenv("CB_CLIP_KEY", raising=False)
    result = CliRunner().invoke(app, ["copy", "x"])
    assert result.exit_code == 1 and "cb clip keygen" in result.output


def test_bench_counts_every_clip(redis_server: RedisServer) -> None:
    result = CliRunner().invoke(app, ["clip", "bench", "--count", "100", "--interval-ms", "0.5",
                                      "--url", redis_server.url()])
    assert result.exit_code == 0, result.output
    bridge = next(line for line in result.stdout.splitlines() if line.startswith("bridge"))
    anchor = next(line for line in result.stdout.splitlines() if line.startswith("anchor"))
    # sent, p50, p99, max, lost, dup, reordered, superseded
    sent, *_lat, lost, dup, reord, _superseded = bridge.split()[-8:]
    assert (sent, lost, dup, reord) == ("100", "0", "0", "0"), bridge
    assert anchor.split()[-8] == "100" and anchor.split()[-4:-1] == ["0", "0", "0"]
    assert "target (bridge)" in result.stdout


def test_once_with_timeout_exits_1_when_nothing_comes(env_for) -> None:
    result = subprocess.run([sys.executable, "-m", "cb", "clip", "listen", "--once", "--timeout", "1", "--stdout"],
                            capture_output=True, env=env_for(SUB_USER, SUB_PASS), cwd=ROOT, timeout=30)
    assert result.returncode == 1 and b"no clip within 1 s" in result.stderr and result.stdout == b""


@pytest.mark.parametrize("env,message", [({}, "no Redis configured"),
                                         ({"CB_REDIS_URL": "redis://127.0.0.1:1"}, "cb clip keygen"),
                                         ({"CB_REDIS_URL": "redis://10.1.2.3:6379", "CB_CLIP_KEY": "k" * 43},
                                          "refusing plaintext")])
def test_listen_without_a_usable_config_is_one_clear_line(env: dict[str, str], message: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CB_REDIS_URL", "CB_CLIP_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["clip", "listen"])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
