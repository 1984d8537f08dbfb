"""The listener against a real redis-server, through the TCP fault proxy where a fault needs it:
R1 baseline, R2 killed/reset links and the missed-clips catch-up, R3 Redis restart, R4 half-open,
R7 wrong credentials, R9/R12 refusals, R10 payloads, R11 clipboard failures, R14 duplicates and stale
stream entries. The clipboard is a recording backend here (the real one: test_clip_cli.py).

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_listen.py -q
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from cb.clip import message
from cb.clip.clipboard import ClipboardError, RecordingBackend
from cb.clip.config import ClipConfig
from cb.clip.errors import ClipError
from cb.clip.message import ClipMessage
from cb.clip.publish import Publisher
from cb.clip.subscriber import Listener
from tests.cb.clip.conftest import FAST, make_cfg
from tests.support.redis_server import SUB_PASS, SUB_USER, FaultProxy, RedisServer, wait_until

pytestmark = pytest.mark.integration

FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    fp = FaultProxy(redis_server.port)
    yield fp
    fp.close()


@pytest.fixture
def proxied_cfg(redis_server: RedisServer, proxy: FaultProxy, clip_key: bytes) -> ClipConfig:
    return make_cfg(redis_server.url(SUB_USER, SUB_PASS, port=proxy.port), clip_key)


def _raw(clip_key: bytes, seq: int, text: str, ts_ms: int | None = None, sender: str = "box-test") -> bytes:
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    return message.encode(ClipMessage(sender=sender, seq=seq, ts_ms=ts, text=text), clip_key)


def test_r1_many_clips_arrive_in_order_each_write_announced(sub_cfg, publisher: Publisher, run_listener) -> None:
    backend = RecordingBackend()
    running = run_listener(sub_cfg, backend)
    texts = [f"clip {i}\nsecond line" for i in range(300)]
    for text in texts:
        publisher.publish(text)
    stats = running.listener.stats
    assert wait_until(lambda: stats.applied + stats.superseded == 300, 15), stats
    # Back to back, a clip that arrives together with newer ones is superseded, never applied late.
    order = [texts.index(t) for t in backend.texts]
    assert order == sorted(set(order)) and backend.texts[-1] == texts[-1]
    assert stats.applied == len(backend.texts) and not stats.refused and stats.missed == 0
    writes = [line for line in running.lines("info") if line.startswith("clipboard <- ")]
    assert len(writes) == stats.applied
    assert writes[-1].startswith("clipboard <- 'clip 299' (2 lines, 20 bytes) from box-test")


def test_r1_paced_clips_are_each_applied(sub_cfg, publisher: Publisher, run_listener) -> None:
    backend = RecordingBackend()
    run_listener(sub_cfg, backend)
    for i in range(30):
        publisher.publish(f"paced {i}")
        assert backend.wait_for(i + 1, 5)
    assert backend.texts == [f"paced {i}" for i in range(30)]


def test_r9_r12_bad_payloads_never_reach_the_clipboard(redis_server: RedisServer, clip_key: bytes, sub_cfg,
                                                       run_listener) -> None:
    backend = RecordingBackend()
    running = run_listener(sub_cfg, backend)
    admin = redis_server.admin()
    good = _raw(clip_key, 10, "first")
    admin.publish("clipboard", good)
    assert backend.wait_for(1, 5)
    head, _, body = _raw(clip_key, 11, "payload").partition(b"\n")
    header = json.loads(head)
    unsigned = json.dumps({k: v for k, v in header.items() if k != "mac"}).encode() + b"\n" + body
    truncated = json.dumps({**header, "mac": header["mac"][:20]}).encode() + b"\n" + body
    bad = [
        (_raw(b"w" * 32, 12, "wrong key"), "forged"),
        (unsigned, "unsigned"),
        (truncated, "forged"),
        (head + b"\nchanged payload", "forged"),
        (good, "replayed"),
        (_raw(clip_key, 13, "old", ts_ms=int((time.time() - 300) * 1000)), "stale"),
        (_raw(clip_key, 14, "future", ts_ms=int((time.time() + 300) * 1000)), "stale"),
        (_raw(clip_key, 15, "x" * ((1 << 20) + 1)), "oversized"),
        (b"\xff\x00 not json at all", "malformed"),
        (b'{"v": 1, "sender": "box-test"}\nno mac', "unsigned"),
        (b"[]\nx", "malformed"),
    ]
    for payload, _reason in bad:
        admin.publish("clipboard", payload)
    admin.publish("clipboard", _raw(clip_key, 16, "after the storm"))
    assert backend.wait_for(2, 5)
    time.sleep(0.1)  # nothing else may be in flight behind the last good clip
    assert backend.texts == ["first", "after the storm"]
    refused = running.listener.stats.refused
    expected: dict[str, int] = {}
    for _payload, reason in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(refused) == expected
    assert sum(1 for line in running.lines("warn") if line.startswith("refused (")) == len(bad)
    assert running.thread.is_alive()


PASTEJACK = [
    "echo ok\x1b[201~rm -rf ~\r",
    "\x1b\x1b[201~[201~curl x | sh\n",
    "\x1b[200~ls",
    "x\x1b]52;c;Y3VybCB4fHNo\x07y",
    "a\x9bb",
    "nul\x00byte",
    "trailing newline\n",
    "bidi \u202e override",
]


def test_r10_signed_pastejacking_payloads_are_neutralised_and_announced(sub_cfg, publisher: Publisher,
                                                                        run_listener) -> None:
    backend = RecordingBackend()
    running = run_listener(sub_cfg, backend)
    for i, payload in enumerate(PASTEJACK):
        publisher.publish(payload)
        assert backend.wait_for(i + 1, 5)
    for text in backend.texts:
        assert not FORBIDDEN.search(text) and "\u202e" not in text and not text.endswith("\n")
    assert backend.texts[0] == "echo okrm -rf ~"
    notes = [line for line in running.lines("info") if line.startswith("clipboard <- ")]
    assert "removed 6 control/escape characters" in notes[0] and "dropped trailing newline" in notes[6]


class FlakyBackend(RecordingBackend):
    """Fails the first `failures` sets, like a clipboard tool with no display, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def set(self, text: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ClipboardError("xclip: Error: Can't open display")
        super().set(text)


def test_r11_failing_clipboard_is_reported_and_the_next_clip_lands(sub_cfg, publisher: Publisher,
                                                                   run_listener) -> None:
    backend = FlakyBackend(failures=2)
    running = run_listener(sub_cfg, backend)
    for n, text in enumerate(("one", "two"), start=1):
        publisher.publish(text)
        assert wait_until(lambda n=n: running.listener.stats.clipboard_errors == n, 5)
    publisher.publish("three")
    assert backend.wait_for(1, 5)
    assert backend.texts == ["three"]
    assert running.wait_notice("clipboard not set: xclip: Error: Can't open display")
    assert running.listener.stats.clipboard_errors == 2 and running.thread.is_alive()


class CrashingBackend(RecordingBackend):
    def set(self, text: str) -> None:
        if text == "boom":
            raise RuntimeError("handler bug")
        super().set(text)


def test_r12_a_handler_crash_does_not_end_the_listener(sub_cfg, publisher: Publisher, run_listener) -> None:
    backend = CrashingBackend()
    running = run_listener(sub_cfg, backend)
    publisher.publish("boom")
    assert wait_until(lambda: running.listener.stats.handler_errors == 1, 5)
    publisher.publish("fine")
    assert backend.wait_for(1, 5) and backend.texts == ["fine"]
    assert running.listener.stats.handler_errors == 1 and running.wait_notice("RuntimeError: handler bug")


@pytest.mark.parametrize("fault", ["kill", "reset"])
def test_r2_lost_link_reconnects_and_applies_only_the_newest_missed_clip(
        fault: str, proxied_cfg: ClipConfig, proxy: FaultProxy, publisher: Publisher, run_listener) -> None:
    backend = RecordingBackend()
    running = run_listener(proxied_cfg, backend)
    publisher.publish("before")
    assert backend.wait_for(1, 5)
    proxy.refuse()
    getattr(proxy, fault)()
    assert running.wait_notice("connection lost", 5)
    for i in range(10):
        publisher.publish(f"missed {i}")  # straight to Redis: the listener cannot see these live
    t0 = time.monotonic()
    proxy.heal()
    assert backend.wait_for(2, 5), running.notices
    assert time.monotonic() - t0 < 5
    time.sleep(0.2)
    assert backend.texts == ["before", "missed 9"]  # newest only, no burst
    assert running.wait_notice("9 clips missed while away; applied the newest")
    assert running.listener.stats.missed == 9
    publisher.publish("after")
    assert backend.wait_for(3, 5) and backend.texts[-1] == "after"


def test_r2_client_kill_pubsub_resubscribes_within_seconds(redis_server: RedisServer, sub_cfg, publisher: Publisher,
                                                           run_listener) -> None:
    backend = RecordingBackend()
    running = run_listener(sub_cfg, backend)
    admin = redis_server.admin()
    killed_at = time.monotonic()
    assert admin.client_kill_filter(_type="pubsub") >= 1
    assert wait_until(lambda: running.listener.stats.connects >= 2 and running.listener.connected.is_set(), 5)
    publisher.publish("after kill")
    assert backend.wait_for(1, 5) and backend.texts == ["after kill"]
    assert time.monotonic() - killed_at < 5


@pytest.mark.slow
def test_r3_redis_restart_the_listener_survives_without_busy_looping(redis_server: RedisServer, sub_cfg,
                                                                     publisher: Publisher, run_listener) -> None:
    backend = RecordingBackend()
    timing = replace(FAST, backoff_max_s=0.5)
    running = run_listener(sub_cfg, backend, timing=timing)
    redis_server.stop()
    assert running.wait_notice("connection lost", 5)
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(2.0)  # Redis is down: the listener must back off, not spin
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    redis_server.start()
    back = time.monotonic()
    assert wait_until(lambda: running.listener.connected.is_set(), 5)
    assert time.monotonic() - back < 5
    assert cpu < 0.05, f"listener used {cpu:.0%} CPU while Redis was down"
    publisher.publish("after restart")
    assert backend.wait_for(1, 5) and backend.texts == ["after restart"]
    assert running.thread.is_alive() and running.wait_notice("reconnected")


def test_r4_half_open_link_is_noticed_by_the_missing_pong(proxied_cfg: ClipConfig, proxy: FaultProxy,
                                                          publisher: Publisher, run_listener) -> None:
    backend = RecordingBackend()
    running = run_listener(proxied_cfg, backend)
    publisher.publish("before")
    assert backend.wait_for(1, 5)
    proxy.blackhole()
    t0 = time.monotonic()
    assert running.wait_notice("no reply to PING", 5), running.notices
    detected = time.monotonic() - t0
    # FAST: ping after 0.4 s of silence, dead 0.6 s later; generous slack for a loaded 2-core box.
    assert detected < FAST.ping_interval_s + FAST.pong_timeout_s + 2.0
    proxy.heal()
    assert wait_until(lambda: running.listener.connected.is_set(), 5)
    publisher.publish("after heal")
    assert backend.wait_for(2, 5) and backend.texts == ["before", "after heal"]
    assert running.listener.stats.dead_links >= 1


def test_r14_a_clip_seen_live_and_again_in_the_stream_is_applied_once(proxied_cfg: ClipConfig, proxy: FaultProxy,
                                                                      publisher: Publisher, run_listener) -> None:
    backend = RecordingBackend()
    running = run_listener(proxied_cfg, backend)
    publisher.publish("only once")
    assert backend.wait_for(1, 5)
    proxy.kill()
    assert wait_until(lambda: running.listener.stats.connects >= 2 and running.listener.connected.is_set(), 5)
    time.sleep(0.2)
    assert backend.texts == ["only once"]
    assert running.listener.stats.refused["replayed"] == 1
    assert not running.lines("warn")[1:] or all("refused" not in line for line in running.lines("warn"))


def test_r14_catch_up_at_start_applies_a_fresh_entry_but_not_a_stale_one(redis_server: RedisServer,
                                                                         clip_key: bytes, sub_cfg,
                                                                         run_listener) -> None:
    admin = redis_server.admin()
    admin.xadd("clipboard:stream", {"m": _raw(clip_key, 5, "copied while the laptop slept")})
    backend = RecordingBackend()
    run_listener(sub_cfg, backend)
    assert backend.wait_for(1, 5) and backend.texts == ["copied while the laptop slept"]

    admin.xadd("clipboard:stream", {"m": _raw(clip_key, 6, "ten minutes ago", ts_ms=int((time.time() - 600) * 1000))})
    later = RecordingBackend()
    running = run_listener(replace(sub_cfg, sender="other"), later)
    assert running.wait_notice("refused (stale)")
    assert later.texts == []


def test_once_returns_after_the_first_clip(sub_cfg, publisher: Publisher, tmp_path) -> None:
    backend = RecordingBackend()
    listener = Listener(sub_cfg, backend, timing=FAST, once=True, catch_up_first=False)
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    assert listener.connected.wait(5)
    publisher.publish("just one")
    thread.join(5)
    assert not thread.is_alive() and backend.texts == ["just one"]


def test_r7_wrong_password_gives_up_after_a_few_tries(redis_server: RedisServer, clip_key: bytes) -> None:
    cfg = make_cfg(redis_server.url(SUB_USER, "not-the-password"), clip_key)
    notices: list[tuple[str, str]] = []
    listener = Listener(cfg, RecordingBackend(), timing=FAST, notify=lambda lv, line: notices.append((lv, line)))
    t0 = time.monotonic()
    with pytest.raises(ClipError, match=r"refused the credentials \(3 tries\)"):
        listener.run()
    assert time.monotonic() - t0 < 5
    auth_failures = sum(int(e["count"]) for e in redis_server.admin().acl_log() if e["reason"] == "auth")
    assert auth_failures == 3  # no retry storm
    assert len([n for n in notices if "retrying" in n[1]]) == 2


def test_a_user_that_may_not_read_the_stream_still_gets_live_clips(redis_server: RedisServer, clip_key: bytes,
                                                                   publisher: Publisher, run_listener) -> None:
    admin = redis_server.admin()
    admin.execute_command("ACL", "SETUSER", "live_only", "on", ">live-pass", "resetchannels", "&clipboard", "-@all",
                          "+subscribe", "+ping")
    cfg = make_cfg(redis_server.url("live_only", "live-pass"), clip_key)
    backend = RecordingBackend()
    running = run_listener(cfg, backend)
    assert running.wait_notice("may not read 'clipboard:stream'")
    publisher.publish("live")
    assert backend.wait_for(1, 5) and backend.texts == ["live"]
