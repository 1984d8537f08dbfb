"""The listen loop (`cb clip listen`): subscribe, verify, sanitise, set the clipboard, survive anything.

One connection lifetime:
1. connect (TCP keepalive on, bounded timeouts) and SUBSCRIBE to the channel;
2. catch up: read the newest stream entry (XREVRANGE COUNT 1) and apply it if it is one we have not
   applied; the sequence gap says how many clips were missed, and only the newest is applied;
3. pump: `get_message` with a short timeout; what has already arrived behind a message is read at
   once and, if several are valid, only the newest is applied (a backlog after a stall is not
   replayed through the clipboard). When nothing arrived for `ping_interval_s` a PING is
   sent; if neither its PONG nor anything else arrives within `pong_timeout_s` the link is dead
   (half-open: the PING write itself succeeds into the kernel buffer, so only the missing reply
   tells), and the loop reconnects.

Any connection error ends the lifetime; the loop waits (exponential backoff with jitter, capped) and
starts again, forever. Wrong credentials or a missing ACL permission are retried a few times and then
end the listener with a clear error, instead of a retry storm. A payload that fails any check, a
clipboard tool that fails or hangs, or a handler bug never ends the loop: each is reported in one line.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cb.clip.clipboard import ClipboardBackend, ClipboardError
from cb.clip.config import ClipConfig, ListenTiming, redact_url
from cb.clip.errors import ClipError
from cb.clip.guard import Guard, Verdict, seen_file
from cb.clip.publish import redis_client
from cb.clip.sanitize import notice_line, sanitize

if TYPE_CHECKING:
    import redis

AUTH_RETRIES = 3
MAX_BATCH = 10_000
PING_TOKEN = b"cb-clip-ping"

Notify = Callable[[str, str], None]  # (level: "info" | "warn", one line)


class DeadLink(ConnectionError):
    """No reply to a PING within the pong timeout: the connection is half-open or stalled."""


@dataclass
class ListenStats:
    """Counters of one listener's life (shown by tests and the benchmark)."""

    applied: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    missed: int = 0
    superseded: int = 0
    clipboard_errors: int = 0
    handler_errors: int = 0
    connects: int = 0
    dead_links: int = 0


def keepalive_options() -> dict[int, int]:
    """TCP keepalive: first probe after 10 s idle, then every 5 s, give up after 3 (where supported)."""
    opts: dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPALIVE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            opts[getattr(socket, name)] = value
    return opts


class Listener:
    """Applies signed clips from Redis to a clipboard backend until stopped (or once, with `once`).

    `notify(level, line)` receives every notice; `guard` defaults to one that keeps its replay state in
    the state dir; `catch_up_first=False` (and `once`) skip the stream catch-up on the first connect, so
    only clips published from now on count (catch-up after a reconnect always runs)."""

    def __init__(self, cfg: ClipConfig, backend: ClipboardBackend, *, timing: ListenTiming | None = None,
                 notify: Notify | None = None, once: bool = False, guard: Guard | None = None,
                 catch_up_first: bool = True) -> None:
        self.cfg = cfg
        self.backend = backend
        self.timing = timing or ListenTiming()
        self.notify: Notify = notify or (lambda level, line: None)
        self.once = once
        self.guard = guard or Guard(cfg.require_key(), cfg.max_bytes, cfg.max_age_s, state_path=seen_file())
        self.catch_up_first = catch_up_first
        self.stats = ListenStats()
        self._stream_denied = False
        self.stop_event = threading.Event()
        self.connected = threading.Event()
        self.applied_event = threading.Event()
        cfg.require_url()

    def stop(self) -> None:
        self.stop_event.set()

    # --- the outer loop: connect, pump, back off, forever --------------------------------------------

    def run(self) -> ListenStats:
        """Listen until `stop()` (or, with `once`, until one clip is applied). Raises ClipError on bad
        credentials or ACL after AUTH_RETRIES tries."""
        import redis as redis_mod

        backoff = self.timing.backoff_min_s
        auth_failures = 0
        lost_at: float | None = None
        where = redact_url(self.cfg.redis_url or "")
        while not self.stop_event.is_set():
            client: redis.Redis | None = None
            pubsub: Any = None
            linked = False
            try:
                client = redis_client(self.cfg, socket_timeout=self.timing.pong_timeout_s, socket_keepalive=True,
                                      socket_keepalive_options=keepalive_options())
                pubsub = client.pubsub()
                pubsub.subscribe(self.cfg.channel)
                self._await_subscribed(pubsub)
                linked = True
                auth_failures = 0
                backoff = self.timing.backoff_min_s
                self.stats.connects += 1
                if lost_at is None:
                    self.notify("info", f"listening on {where}, channel {self.cfg.channel!r}")
                else:
                    self.notify("info", f"reconnected, {time.monotonic() - lost_at:.1f} s after the link was lost")
                    lost_at = None
                if self.stats.connects > 1 or (self.catch_up_first and not self.once):
                    self._catch_up(client)
                self.connected.set()
                self._pump(pubsub)
            except (redis_mod.AuthenticationError, redis_mod.exceptions.NoPermissionError) as exc:
                auth_failures += 1
                kind = "refused the credentials" if isinstance(exc, redis_mod.AuthenticationError) else "ACL denies"
                if auth_failures >= AUTH_RETRIES:
                    raise ClipError(f"Redis at {where} {kind} ({auth_failures} tries): {exc}") from None
                self.notify("warn", f"Redis {kind}: {exc}; retrying in {backoff:.1f} s")
            except (redis_mod.RedisError, OSError) as exc:  # connection trouble or an odd reply: start over
                self.stats.dead_links += isinstance(exc, DeadLink)
                if linked:
                    lost_at = time.monotonic()
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                what = "connection lost" if linked else "cannot connect"
                self.notify("warn", f"{what} ({detail}); retrying in {backoff:.1f} s")
            finally:
                self.connected.clear()
                for thing in (pubsub, client):
                    if thing is not None:
                        with contextlib.suppress(Exception):  # closing a broken link must not end the loop
                            thing.close()
            if self.stop_event.is_set():
                break
            self.stop_event.wait(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.timing.backoff_max_s)
        self.guard.close()
        return self.stats

    def _await_subscribed(self, pubsub: Any) -> None:
        """Read the SUBSCRIBE confirmation, so what `_pump` reads next is real traffic."""
        deadline = time.monotonic() + self.timing.pong_timeout_s
        while time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=0.1)
            if msg and msg.get("type") == "subscribe":
                return
        raise DeadLink("no SUBSCRIBE confirmation")

    # --- one connection lifetime ----------------------------------------------------------------------

    def _pump(self, pubsub: Any) -> None:
        t = self.timing
        last_rx = time.monotonic()
        ping_sent: float | None = None
        while not self.stop_event.is_set():
            msg = pubsub.get_message(timeout=min(0.25, t.ping_interval_s))
            now = time.monotonic()
            if msg is not None:
                last_rx, ping_sent = now, None
                batch = [msg]
                while len(batch) < MAX_BATCH and (more := pubsub.get_message(timeout=0)) is not None:
                    batch.append(more)  # everything already received: a backlog is applied newest-only
                payloads = [m["data"] for m in batch if m.get("type") == "message"]
                if payloads:
                    self._handle(payloads, live=True)
                continue
            if ping_sent is not None:
                if now - ping_sent > t.pong_timeout_s:
                    raise DeadLink(f"no reply to PING within {t.pong_timeout_s:g} s")
            elif now - last_rx > t.ping_interval_s:
                pubsub.ping(PING_TOKEN)
                ping_sent = now

    def _catch_up(self, client: redis.Redis) -> None:
        import redis as redis_mod

        if self._stream_denied:
            return
        try:
            entries = client.xrevrange(self.cfg.stream, count=1)
        except redis_mod.exceptions.NoPermissionError:
            self._stream_denied = True
            self.notify("warn", f"this Redis user may not read {self.cfg.stream!r} (needs +xrevrange): "
                                "clips sent while disconnected cannot be caught up")
            return
        if not entries:
            return
        _entry_id, fields = entries[0]
        payload = fields.get(b"m") if isinstance(fields, dict) else None
        if payload is not None:
            self._handle([payload], live=False)

    # --- one message ---------------------------------------------------------------------------------

    def _handle(self, payloads: list[bytes], live: bool) -> None:
        """Verify every payload (in order), then sanitise, apply and report the newest accepted one.

        Several payloads arrive together only when the listener fell behind (stopped, slow clipboard,
        a burst): the clipboard ends at the newest either way, so the older ones are counted as
        superseded instead of flashing through the clipboard. Never raises."""
        accepted: list[Verdict] = []
        for payload in payloads:
            try:
                verdict = self.guard.check(payload)
            except Exception as exc:  # a handler bug must not end the listener (redis-py #2417 class)
                self.stats.handler_errors += 1
                self.notify("warn", f"could not handle a message: {type(exc).__name__}: {exc}")
                continue
            if verdict.accepted:
                accepted.append(verdict)
                continue
            self.stats.refused[verdict.reason] += 1
            # In catch-up, the newest entry usually is the clip we already applied: not news.
            if live or verdict.reason != "replayed":
                self.notify("warn", f"refused ({verdict.reason}): {verdict.detail}")
        if not accepted:
            return
        try:
            self._apply(accepted[-1], live, missed=sum(v.missed for v in accepted), superseded=len(accepted) - 1)
        except Exception as exc:
            self.stats.handler_errors += 1
            self.notify("warn", f"could not handle a message: {type(exc).__name__}: {exc}")

    def _apply(self, verdict: Verdict, live: bool, missed: int, superseded: int) -> None:
        msg = verdict.msg
        assert msg is not None
        clean = sanitize(msg.text)
        try:
            self.backend.set(clean.text)
        except ClipboardError as exc:
            self.stats.clipboard_errors += 1
            self.notify("warn", f"clipboard not set: {exc}")
            return
        finally:
            self.guard.save()
        self.stats.applied += 1
        self.stats.missed += missed
        self.stats.superseded += superseded
        notes = []
        if missed:
            verb = "missed while away; applied the newest" if not live else "missed"
            notes.append(f"{missed} clip{'s' if missed != 1 else ''} {verb}")
        if superseded:
            notes.append(f"{superseded} older clip{'s' if superseded != 1 else ''} arrived at once; applied the newest")
        if clean.removed:
            notes.append(f"removed {clean.removed} control/escape character{'s' if clean.removed != 1 else ''}")
        if clean.dropped_trailing_newline:
            notes.append("dropped trailing newline")
        tail = f" [{'; '.join(notes)}]" if notes else ""
        self.notify("info", f"clipboard <- {notice_line(clean.text)} from {msg.sender}{tail}")
        self.applied_event.set()
        if self.once:
            self.stop_event.set()
