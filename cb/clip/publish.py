"""The publisher: `copy_text(text) -> CopyResult`, used by `cb copy` and the REPL's `/copy`.

With CB_REDIS_URL set, a clip is signed (see `message`) and sent in one round trip: PUBLISH on the
channel (for listeners connected now) and XADD to the capped stream (for a listener that was away).
Without it, the clip goes to the controlling terminal as OSC 52 (tmux passthrough form inside tmux),
after the same sanitising the subscriber does, since no subscriber will see it. Every failure is a
ClipError with a one-line message; nothing here retries for long (a dead Redis fails in ≤ ~3 s).

    from cb.clip.publish import copy_text
    result = copy_text("some text")      # -> CopyResult(path="redis", ...) or path="osc52"
    print(result.describe())             # "copied 1 line (9 bytes) via Redis to 1 listener (seq 42)"

The REPL keeps one `Publisher` open instead, so consecutive copies reuse the connection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cb.clip import message, sequence
from cb.clip.config import ClipConfig, load_config, redact_url
from cb.clip.errors import ClipError
from cb.clip.osc52 import detect_multiplexer, write_osc52
from cb.clip.sanitize import sanitize

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class CopyResult:
    """What a copy did. `path` is "redis" or "osc52"; the Redis fields are None for OSC 52."""

    path: Literal["redis", "osc52"]
    nbytes: int
    lines: int
    form: str                      # "redis", "osc52", "osc52+tmux" or "osc52+screen"
    seq: int | None = None         # the message's sequence number
    sender: str | None = None
    receivers: int | None = None   # listeners that got the PUBLISH right now (0 = it waits in the stream)
    stream_id: str | None = None   # the XADD entry id

    def describe(self) -> str:
        """One line for the user, saying which path was used."""
        what = f"copied {self.lines} line{'s' if self.lines != 1 else ''} ({self.nbytes} bytes)"
        if self.path == "osc52":
            return f"{what} via OSC 52 ({self.form}); no Redis configured"
        n = self.receivers or 0
        who = f"{n} listener{'s' if n != 1 else ''}" if n else "no listener now (kept in the stream)"
        return f"{what} via Redis to {who} (seq {self.seq})"


def _count_lines(text: str) -> int:
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def _check_size(text: str, cfg: ClipConfig) -> bytes:
    data = text.encode("utf-8")
    if len(data) > cfg.max_bytes:
        raise ClipError(f"clip is {len(data)} bytes, over the {cfg.max_bytes}-byte cap (CB_CLIP_MAX_BYTES)")
    return data


def redis_client(cfg: ClipConfig, socket_timeout: float | None = 2.0, **extra: object) -> redis.Redis:
    """A redis-py client for `cfg` with bounded timeouts (bytes responses; for rediss:// the server's
    certificate and host name are verified, against CB_REDIS_CA when set)."""
    import redis as redis_mod
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    url = cfg.require_url()
    if url.startswith("rediss://"):
        extra = {"ssl_cert_reqs": "required", "ssl_check_hostname": True, **extra}
        if cfg.ca_file:
            extra["ssl_ca_certs"] = cfg.ca_file
    return redis_mod.Redis.from_url(
        url,
        socket_connect_timeout=cfg.connect_timeout_s,
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        **extra,
    )


def explain_redis_error(exc: Exception, cfg: ClipConfig) -> ClipError:
    """Turn a redis-py exception into a one-line ClipError naming the server."""
    import redis as redis_mod

    where = redact_url(cfg.redis_url or "")
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, redis_mod.AuthenticationError):
        return ClipError(f"Redis at {where} refused the user name or password")
    if isinstance(exc, redis_mod.exceptions.NoPermissionError):
        return ClipError(f"Redis at {where} denies this (ACL): {detail}")
    if isinstance(exc, (redis_mod.ConnectionError, redis_mod.TimeoutError)):
        return ClipError(f"cannot reach Redis at {where}: {detail}")
    return ClipError(f"Redis at {where}: {detail}")


class Publisher:
    """Signs and publishes clips over one Redis connection; `publish` may be called many times."""

    def __init__(self, cfg: ClipConfig, seq_file: Path | None = None) -> None:
        self.cfg = cfg
        self.seq_file = seq_file
        self.key = cfg.require_key()
        cfg.require_url()
        if not cfg.sender:
            raise ClipError("publisher needs a sender name (load_config(need_sender=True))")
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis_client(self.cfg)
        return self._client

    def publish(self, text: str) -> CopyResult:
        """Sign `text`, PUBLISH it and XADD it to the stream; raise ClipError on any failure."""
        import redis as redis_mod

        data = _check_size(text, self.cfg)
        msg = message.ClipMessage(sender=self.cfg.sender, seq=sequence.next_seq(self.cfg.sender, self.seq_file),
                                  ts_ms=time.time_ns() // 1_000_000, text=text)
        payload = message.encode(msg, self.key)
        pipe = self._redis().pipeline(transaction=False)
        pipe.publish(self.cfg.channel, payload)
        pipe.xadd(self.cfg.stream, {"m": payload}, maxlen=self.cfg.stream_len, approximate=True)
        try:
            receivers, stream_id = pipe.execute()
        except redis_mod.RedisError as exc:
            self.close()
            raise explain_redis_error(exc, self.cfg) from None
        return CopyResult(path="redis", nbytes=len(data), lines=_count_lines(text), form="redis", seq=msg.seq,
                          sender=msg.sender, receivers=int(receivers),
                          stream_id=stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def copy_text(text: str, *, cfg: ClipConfig | None = None, tty_path: str = "/dev/tty") -> CopyResult:
    """Copy `text` to the user's clipboard: through Redis when configured, else OSC 52 on the terminal.

    Raises ClipError (one line) when the clip is over the size cap, the key is missing, Redis cannot be
    reached or refuses, or (OSC 52) there is no controlling terminal.
    """
    cfg = cfg or load_config(need_sender=True)
    if cfg.redis_url:
        pub = Publisher(cfg)
        try:
            return pub.publish(text)
        finally:
            pub.close()
    _check_size(text, cfg)
    clean = sanitize(text).text
    form = write_osc52(clean, tty_path=tty_path, multiplexer=detect_multiplexer())
    return CopyResult(path="osc52", nbytes=len(clean.encode("utf-8")), lines=_count_lines(clean), form=form)
