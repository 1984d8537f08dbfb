"""`cb clip bench`: the bridge's end-to-end latency through a local Redis, next to its anchor.

Bridge: `Publisher.publish` (sequence number, HMAC, PUBLISH + XADD) → Redis → `Listener` (verify,
replay/age checks and state write, sanitise) → a recording clipboard backend; latency is from the
start of `publish` to the backend's set, one clock (perf_counter), one process. Anchor, same run: a
bare redis-py PUBLISH of a payload of the same size to a bare `get_message` loop, i.e. the floor
the bridge adds its work on top of. Each clip carries its index, so lost, duplicated and reordered
clips are counted exactly. A clip that reached the listener together with newer ones is not set
(the clipboard ends at the newest either way): it is counted as superseded, not lost, and its latency
is measured to the write of the newer clip that covered it. Target on loopback: p99 ≤ 20 ms, 0 lost,
0 duplicated.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cb.clip.clipboard import RecordingBackend
from cb.clip.config import ClipConfig, ListenTiming
from cb.clip.errors import ClipError
from cb.clip.guard import Guard
from cb.clip.publish import Publisher
from cb.clip.subscriber import Listener

TARGET_P99_MS = 20.0


@dataclass(frozen=True)
class BenchRow:
    """One measured path: latency percentiles (ms) and delivery counts."""

    name: str
    sent: int
    latencies_ms: list[float]
    lost: int
    duplicated: int
    reordered: int
    superseded: int = 0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


@contextlib.contextmanager
def local_redis() -> Iterator[str]:
    """A throw-away redis-server on a free loopback port (no persistence); yields its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise ClipError("cb clip bench needs redis-server on PATH (apt install redis-server), or --url")
    with tempfile.TemporaryDirectory(prefix="cb-clip-bench-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no", "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                        c.sendall(b"PING\r\n")
                        if c.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ClipError("the local redis-server for the benchmark did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _row(name: str, sent: int, starts: list[float], received: list[tuple[float, int]],
         superseded: int = 0) -> BenchRow:
    """Latency of clip i = first time the clipboard held clip i or a newer one (so a superseded clip is
    measured to the write that covered it); lost = neither applied nor superseded by a newer one."""
    seen: set[int] = set()
    dup = reordered = 0
    newest = -1
    covered: list[tuple[float, int]] = []  # (time, newest index applied so far), times ascending
    for t, idx in sorted(received):
        if idx in seen:
            dup += 1
            continue
        seen.add(idx)
        reordered += idx < newest
        newest = max(newest, idx)
        covered.append((t, newest))
    lat: list[float] = []
    j = 0
    for i in range(sent):
        while j < len(covered) and covered[j][1] < i:
            j += 1
        if j == len(covered):
            break
        lat.append((covered[j][0] - starts[i]) * 1000)
    return BenchRow(name, sent, lat, lost=sent - len(seen) - superseded, duplicated=dup, reordered=reordered,
                    superseded=superseded)


def _pad(i: int, size: int) -> str:
    head = f"clip {i} "
    return head + "x" * max(0, size - len(head))


def bench_bridge(url: str, count: int, size: int, interval_s: float, work: Path) -> BenchRow:
    channel = f"bench-{secrets.token_hex(4)}"
    cfg = ClipConfig(redis_url=url, key=secrets.token_urlsafe(32).encode(), channel=channel,
                     stream=f"{channel}:stream", sender=f"bench-{secrets.token_hex(3)}", max_age_s=600)
    backend = RecordingBackend()
    guard = Guard(cfg.require_key(), cfg.max_bytes, cfg.max_age_s, state_path=work / "seen.json")
    listener = Listener(cfg, backend, timing=ListenTiming(), guard=guard, catch_up_first=False)
    thread = threading.Thread(target=listener.run, name="bench-listener", daemon=True)
    thread.start()
    if not listener.connected.wait(10):
        listener.stop()
        raise ClipError("the benchmark listener did not connect")
    pub = Publisher(cfg, seq_file=work / "seq")
    starts: list[float] = []
    try:
        for i in range(count):
            starts.append(time.perf_counter())
            pub.publish(_pad(i, size))
            if interval_s:
                time.sleep(interval_s)
        stats = listener.stats
        deadline = time.monotonic() + 10
        while stats.applied + stats.superseded + sum(stats.refused.values()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pub.close()
        listener.stop()
        thread.join(5)
    received = [(t, int(text.split(" ", 2)[1])) for t, text in backend.records]
    return _row("bridge: sign, PUBLISH+XADD, verify, sanitise, set", count, starts, received,
                superseded=listener.stats.superseded)


def bench_anchor(url: str, count: int, size: int, interval_s: float) -> BenchRow:
    import redis

    client = redis.Redis.from_url(url)
    channel = f"anchor-{secrets.token_hex(4)}"
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    received: list[tuple[float, int]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            msg = pubsub.get_message(timeout=0.25)
            if msg and msg.get("type") == "message":
                received.append((time.perf_counter(), int(msg["data"].split(b" ", 2)[1])))

    thread = threading.Thread(target=loop, name="bench-anchor", daemon=True)
    thread.start()
    while client.pubsub_numsub(channel)[0][1] < 1:
        time.sleep(0.01)
    starts: list[float] = []
    for i in range(count):
        starts.append(time.perf_counter())
        client.publish(channel, _pad(i, size).encode())
        if interval_s:
            time.sleep(interval_s)
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    pubsub.close()
    client.close()
    return _row("anchor: bare redis-py PUBLISH -> get_message", count, starts, received)


def run_bench(count: int = 1000, size: int = 64, interval_ms: float = 1.0, url: str | None = None) -> list[BenchRow]:
    """Both rows, measured in this order in one run against `url` (default: a private local Redis)."""
    with contextlib.ExitStack() as stack:
        target = url or stack.enter_context(local_redis())
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cb-clip-bench-state-")))
        interval_s = interval_ms / 1000
        return [bench_bridge(target, count, size, interval_s, work), bench_anchor(target, count, size, interval_s)]


def format_rows(rows: list[BenchRow]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'path':<{width}}  {'sent':>5}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}  {'lost':>4}  "
             f"{'dup':>3}  {'reord':>5}  {'superseded':>10}"]
    for r in rows:
        worst = max(r.latencies_ms) if r.latencies_ms else float("nan")
        lines.append(f"{r.name:<{width}}  {r.sent:>5}  {r.p50:>7.2f}  {r.pct(99):>7.2f}  {worst:>7.2f}  "
                     f"{r.lost:>4}  {r.duplicated:>3}  {r.reordered:>5}  {r.superseded:>10}")
    bridge = rows[0]
    met = bridge.pct(99) <= TARGET_P99_MS and bridge.lost == 0 and bridge.duplicated == 0
    lines.append(f"target (bridge): p99 <= {TARGET_P99_MS:g} ms, 0 lost, 0 duplicated -> {'met' if met else 'NOT met'}")
    return "\n".join(lines)
