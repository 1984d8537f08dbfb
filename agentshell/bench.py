"""`agentshell bench`: the daemon's three numbers, each beside its anchor measured in the same run.

- round trip: send a line to a `cat` tab and wait for its echo, through the daemon (p50/p99), beside the same
  round trip on a bare PTY in this process (the floor the daemon adds to);
- capture: MB/s of a tab that floods its output (`yes | head -c N`), beside a bare PTY reader in this process,
  with the tab's tty raw (the daemon's own cost) and cooked (the default; the kernel's newline translation
  then caps even the bare reader);
- memory: the daemon's RSS with no tabs and with N idle tabs;
- responsiveness: ping p99 while 4 tabs run `yes`, beside ping p99 with nothing running (RELIABILITY D7).

It runs a private daemon in a temp CB_HOME, so the user's own daemon and tabs are untouched.
"""

from __future__ import annotations

import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentshell.client import Client

TARGETS = {"round_trip_p99_ms": 10.0, "capture_mb_s": 50.0, "rss_100_tabs_mb": 150.0, "ping_under_flood_p99_ms": 100.0}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _round_trips(c: Client, n: int) -> list[float]:
    tab = c.new(["sh", "-c", "stty -echo; exec cat"], name="bench-cat")
    c.wait(tab.id, idle=0.2, timeout=10)
    times = []
    offset = c.info(tab.id).end_offset
    for i in range(n):
        token = f"rt{i:06d}"
        t0 = time.perf_counter()
        c.send(tab.id, token, ["Enter"])
        result = c.wait(tab.id, pattern=token, since=offset, timeout=10)
        times.append((time.perf_counter() - t0) * 1000)
        offset = result.offset
    c.kill(tab.id)
    return times


def _bare_pty_round_trips(n: int) -> list[float]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("sh", ["sh", "-c", "stty -echo; exec cat"])
    time.sleep(0.2)
    if _readable(fd):
        os.read(fd, 65536)  # whatever the shell printed before cat
    times = []
    for i in range(n):
        token = f"rt{i:06d}".encode()
        t0 = time.perf_counter()
        os.write(fd, token + b"\r")
        got = b""
        while token not in got:
            got += os.read(fd, 65536)
        times.append((time.perf_counter() - t0) * 1000)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    os.close(fd)
    return times


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def _pings(c: Client, seconds: float) -> list[float]:
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        c.ping()
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.002)
    return times


def _pings_under_flood(c: Client, tabs: int, seconds: float) -> list[float]:
    flooding = [c.new(["yes"], name=f"bench-yes{i}") for i in range(tabs)]
    try:
        return _pings(c, seconds)
    finally:
        for tab in flooding:
            c.rm(tab.id, force=True)


def _flood_command(nbytes: int, raw: bool) -> str:
    """A flood of text lines; `raw` turns off the tty's output processing (ONLCR), which caps a cooked PTY."""
    return ("stty raw; " if raw else "") + f"yes 'the quick brown fox jumps over the lazy dog' | head -c {nbytes}"


def _capture(c: Client, nbytes: int, raw: bool) -> float:
    t0 = time.perf_counter()
    tab = c.new(["sh", "-c", _flood_command(nbytes, raw)], name="bench-flood")
    result = c.wait(tab.id, exit=True, timeout=300)
    elapsed = time.perf_counter() - t0
    got = result.tab.end_offset
    c.rm(tab.id, force=True)
    return got / elapsed / 1e6


def _bare_pty_capture(nbytes: int, raw: bool) -> float:
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("sh", ["sh", "-c", _flood_command(nbytes, raw)])
    got = 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        got += len(chunk)
    os.waitpid(pid, 0)
    os.close(fd)
    return got / (time.perf_counter() - t0) / 1e6


def run_bench(round_trips: int = 500, flood_mb: int = 200, idle_tabs: int = 100) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ash-bench-") as home:
        env = {**os.environ, "CB_HOME": home}
        os.environ["CB_HOME"] = home
        daemon = subprocess.Popen([sys.executable, "-m", "agentshell.daemon", "--stop-timeout", "1"], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            c = _connect()
            rss_empty = rss_mb(daemon.pid)
            idle_pings = _pings(c, 1.0)
            flood_pings = _pings_under_flood(c, 4, 2.0)
            rt = _round_trips(c, round_trips)
            bare_rt = _bare_pty_round_trips(round_trips)
            capture = _capture(c, flood_mb * 1_000_000, raw=True)
            bare_capture = _bare_pty_capture(flood_mb * 1_000_000, raw=True)
            cooked = _capture(c, flood_mb * 1_000_000, raw=False)
            bare_cooked = _bare_pty_capture(flood_mb * 1_000_000, raw=False)
            for i in range(idle_tabs):
                c.new(["cat"], name=f"idle{i}")
            time.sleep(0.5)
            rss_tabs = rss_mb(daemon.pid)
            c.shutdown()
            daemon.wait(timeout=60)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            os.environ.pop("CB_HOME", None)
    results: dict[str, Any] = {
        "round_trip_p50_ms": round(statistics.median(rt), 3),
        "round_trip_p99_ms": round(_percentile(rt, 0.99), 3),
        "bare_pty_round_trip_p50_ms": round(statistics.median(bare_rt), 3),
        "bare_pty_round_trip_p99_ms": round(_percentile(bare_rt, 0.99), 3),
        "ping_p50_ms": round(statistics.median(idle_pings), 3),
        "ping_p99_ms": round(_percentile(idle_pings, 0.99), 3),
        "ping_under_4_floods_p50_ms": round(statistics.median(flood_pings), 3),
        "ping_under_4_floods_p99_ms": round(_percentile(flood_pings, 0.99), 3),
        "capture_mb_s": round(capture, 1),
        "bare_pty_capture_mb_s": round(bare_capture, 1),
        "capture_cooked_tty_mb_s": round(cooked, 1),
        "bare_pty_capture_cooked_tty_mb_s": round(bare_cooked, 1),
        "rss_0_tabs_mb": round(rss_empty, 1),
        f"rss_{idle_tabs}_tabs_mb": round(rss_tabs, 1),
    }
    results["targets"] = dict(TARGETS)
    return results


def _connect() -> Client:
    deadline = time.monotonic() + 15
    while True:
        try:
            return Client.connect(autostart=False)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def format_results(results: dict[str, Any]) -> str:
    """Side by side: measured, anchor, target."""
    r = results
    tabs_key = next(k for k in r if k.startswith("rss_") and k != "rss_0_tabs_mb")
    rows = [
        ("", "agentshell", "anchor", "target"),
        ("round trip p50 (ms)", r["round_trip_p50_ms"], f"{r['bare_pty_round_trip_p50_ms']} bare PTY", ""),
        ("round trip p99 (ms)", r["round_trip_p99_ms"], f"{r['bare_pty_round_trip_p99_ms']} bare PTY",
         f"<= {TARGETS['round_trip_p99_ms']}"),
        ("ping p99 under 4 floods (ms)", r["ping_under_4_floods_p99_ms"], f"{r['ping_p99_ms']} idle",
         f"< {TARGETS['ping_under_flood_p99_ms']}"),
        ("capture, raw tty (MB/s)", r["capture_mb_s"], f"{r['bare_pty_capture_mb_s']} bare PTY",
         f">= {TARGETS['capture_mb_s']}"),
        ("capture, cooked tty (MB/s)", r["capture_cooked_tty_mb_s"],
         f"{r['bare_pty_capture_cooked_tty_mb_s']} bare PTY", ""),
        (f"RSS, {tabs_key.split('_')[1]} idle tabs (MB)", r[tabs_key], f"{r['rss_0_tabs_mb']} with 0 tabs",
         f"<= {TARGETS['rss_100_tabs_mb']}"),
    ]
    width = [max(len(str(row[i])) for row in rows) for i in range(4)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, width, strict=True)).rstrip() for row in rows)
