"""The publisher against a real redis-server with ACL users: PUBLISH + capped stream, refusals (R6, R7,
R13), and the OSC 52 fallback written to a real pty.

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_publish.py -q
"""

from __future__ import annotations

import base64
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from cb.clip import message
from cb.clip.config import ClipConfig
from cb.clip.errors import ClipError
from cb.clip.osc52 import detect_multiplexer, osc52_sequence
from cb.clip.publish import Publisher, copy_text
from tests.cb.clip.conftest import make_cfg
from tests.support.redis_server import PUB_PASS, PUB_USER, SUB_PASS, SUB_USER, RedisServer, free_port

pytestmark = pytest.mark.integration


def _cb(args: list[str], env: dict[str, str], stdin: bytes | None = None, timeout: float = 30):
    return subprocess.run([sys.executable, "-m", "cb", *args], input=stdin, capture_output=True, env=env,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[3])


def test_publish_reaches_a_subscriber_and_the_stream(redis_server: RedisServer, publisher: Publisher,
                                                     clip_key: bytes) -> None:
    sub = redis.Redis.from_url(redis_server.url(SUB_USER, SUB_PASS))
    ps = sub.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("clipboard")
    ps.get_message(timeout=1)
    result = publisher.publish("hello\nworld")
    assert (result.path, result.receivers, result.lines, result.nbytes) == ("redis", 1, 2, 11)
    got = ps.get_message(timeout=2)
    msg = message.decode(got["data"], clip_key, 1 << 20)
    assert (msg.text, msg.seq, msg.sender) == ("hello\nworld", result.seq, "box-test")
    newest = sub.xrevrange("clipboard:stream", count=1)
    assert newest[0][1][b"m"] == got["data"] and newest[0][0].decode() == result.stream_id
    ps.close()
    sub.close()


def test_sequence_numbers_grow_by_one(publisher: Publisher) -> None:
    seqs = [publisher.publish(f"c{i}").seq for i in range(5)]
    assert seqs == list(range(seqs[0], seqs[0] + 5))


def test_stream_is_capped(redis_server: RedisServer, pub_cfg: ClipConfig, tmp_path: Path) -> None:
    from dataclasses import replace

    pub = Publisher(replace(pub_cfg, stream_len=10), seq_file=tmp_path / "seq")
    for i in range(300):
        pub.publish(f"clip {i}")
    pub.close()
    length = redis_server.admin().xlen("clipboard:stream")
    assert length < 300 and length >= 10  # MAXLEN ~ trims whole macro nodes, never below the cap


def test_over_the_cap_is_refused_before_anything_is_sent(redis_server: RedisServer, publisher: Publisher) -> None:
    with pytest.raises(ClipError, match="over the 1048576-byte cap"):
        publisher.publish("x" * ((1 << 20) + 1))
    assert redis_server.admin().xlen("clipboard:stream") == 0
    publisher.publish("x" * (1 << 20))  # exactly the cap goes through


def test_cli_copy_rejects_oversize_with_exit_1(redis_server: RedisServer, clip_key: bytes) -> None:
    env = {**os.environ, "CB_REDIS_URL": redis_server.url(PUB_USER, PUB_PASS), "CB_CLIP_KEY": clip_key.decode()}
    big = _cb(["copy"], env, stdin=b"x" * (50 << 20))
    assert big.returncode == 1 and b"cap" in big.stderr and b"Traceback" not in big.stderr
    ok = _cb(["copy"], env, stdin=b"git status\n")
    assert ok.returncode == 0, ok.stderr
    assert b"via Redis" in ok.stderr and b"1 line" in ok.stderr
    assert redis_server.admin().xlen("clipboard:stream") == 1


def test_subscriber_user_may_not_publish(redis_server: RedisServer, clip_key: bytes, tmp_path: Path) -> None:
    pub = Publisher(make_cfg(redis_server.url(SUB_USER, SUB_PASS), clip_key), seq_file=tmp_path / "seq")
    with pytest.raises(ClipError, match="ACL"):
        pub.publish("x")


def test_publisher_user_may_not_subscribe_or_use_other_channels(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url(PUB_USER, PUB_PASS))
    ps = client.pubsub()
    with pytest.raises(redis.exceptions.NoPermissionError):
        ps.subscribe("clipboard")
        ps.get_message(timeout=1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.publish("other:chan", b"x")
    client.close()


def test_wrong_password_is_one_clear_error(redis_server: RedisServer, clip_key: bytes, tmp_path: Path) -> None:
    pub = Publisher(make_cfg(redis_server.url(PUB_USER, "wrong"), clip_key), seq_file=tmp_path / "seq")
    with pytest.raises(ClipError, match="refused the user name or password") as info:
        pub.publish("x")
    assert "wrong" not in str(info.value)  # the password is never echoed


def test_publish_while_redis_is_down_fails_fast(clip_key: bytes, tmp_path: Path) -> None:
    pub = Publisher(make_cfg(f"redis://127.0.0.1:{free_port()}/0", clip_key), seq_file=tmp_path / "seq")
    t0 = time.monotonic()
    with pytest.raises(ClipError, match="cannot reach Redis"):
        pub.publish("x")
    assert time.monotonic() - t0 < 3


def test_publish_to_a_stopped_server_fails_fast(redis_server: RedisServer, clip_key: bytes) -> None:
    env = {**os.environ, "CB_REDIS_URL": redis_server.url(PUB_USER, PUB_PASS), "CB_CLIP_KEY": clip_key.decode()}
    redis_server.pause()  # accepts TCP, never answers: the worst case for a client
    try:
        t0 = time.monotonic()
        result = _cb(["copy", "x"], env)
        assert result.returncode == 1 and b"cannot reach Redis" in result.stderr
        assert time.monotonic() - t0 < 10  # interpreter start-up on a loaded box + the 2 s socket timeout
    finally:
        redis_server.resume()


def _read_all(fd: int, timeout: float = 2.0) -> bytes:
    out = b""
    while select.select([fd], [], [], timeout)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        timeout = 0.2
    return out


def test_without_redis_copy_falls_back_to_osc52_on_the_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("STY", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    master, slave = pty.openpty()
    try:
        result = copy_text("echo hi\x1b[201~\n", cfg=ClipConfig(redis_url=None, key=None), tty_path=os.ttyname(slave))
        written = _read_all(master)
    finally:
        os.close(slave)
        os.close(master)
    assert result.path == "osc52" and result.form == "osc52"
    assert "OSC 52" in result.describe()
    assert written == b"\x1b]52;c;" + base64.b64encode(b"echo hi") + b"\x07"


def test_tmux_passthrough_form_doubles_every_escape() -> None:
    seq = osc52_sequence("hi", "tmux")
    assert seq == b"\x1bPtmux;\x1b\x1b]52;c;aGk=\x07\x1b\\"
    assert detect_multiplexer({"TMUX": "/tmp/tmux-0/default,1,0", "TERM": "screen"}) == "tmux"
    assert detect_multiplexer({"STY": "1.pts"}) == "screen"
    assert detect_multiplexer({"TERM": "xterm"}) is None


def test_without_redis_or_terminal_the_error_says_so() -> None:
    with pytest.raises(ClipError, match="no terminal for OSC 52"):
        copy_text("x", cfg=ClipConfig(redis_url=None, key=None), tty_path="/nonexistent/tty")


def test_cli_copy_without_a_tty_or_redis_exits_1() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CB_REDIS_URL", "CB_CLIP_KEY")}
    result = subprocess.run([sys.executable, "-m", "cb", "copy", "x"], capture_output=True, env=env, timeout=30,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[3])
    assert result.returncode == 1 and b"OSC 52" in result.stderr


def test_cli_copy_in_a_real_terminal_writes_osc52_to_it() -> None:
    import pexpect

    env = {k: v for k, v in os.environ.items() if k not in ("CB_REDIS_URL", "CB_CLIP_KEY", "TMUX", "STY")}
    env["TERM"] = "xterm-256color"
    child = pexpect.spawn(sys.executable, ["-m", "cb", "copy", "pasted on the laptop"], env=env,
                          cwd=str(Path(__file__).resolve().parents[3]), timeout=30)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    expected = b"\x1b]52;c;" + base64.b64encode(b"pasted on the laptop") + b"\x07"
    assert expected in child.before
    assert b"via OSC 52" in child.before
