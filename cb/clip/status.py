"""`cb clip status` and `cb clip test`: what is configured, whether Redis answers, a signed round trip."""

from __future__ import annotations

import hashlib
import json
import time

from cb.clip import message
from cb.clip.config import ClipConfig, env_file, load_config, redact_url
from cb.clip.errors import ClipError
from cb.clip.publish import Publisher, explain_redis_error, redis_client


def key_fingerprint(key: bytes) -> str:
    """8 hex digits identifying a key without revealing it: compare them on the box and the laptop."""
    return hashlib.sha256(b"cb-clip-fingerprint\x00" + key).hexdigest()[:8]


def _redis_lines(cfg: ClipConfig) -> tuple[list[tuple[str, str]], bool]:
    import redis

    lines: list[tuple[str, str]] = []
    client = redis_client(cfg)
    try:
        t0 = time.perf_counter()
        try:
            client.ping()
        except redis.RedisError as exc:
            return [("connection", f"FAILED: {explain_redis_error(exc, cfg)}")], False
        lines.append(("connection", f"ok ({(time.perf_counter() - t0) * 1000:.1f} ms PING)"))
        try:
            newest = client.xrevrange(cfg.stream, count=1)
            if not newest:
                lines.append(("newest clip", "none in the stream"))
            else:
                head = newest[0][1].get(b"m", b"").partition(b"\n")[0]
                try:
                    h = json.loads(head)
                    age = time.time() - h["ts"] / 1000
                    lines.append(("newest clip", f"seq {h['seq']} from {h['sender']}, {age:.0f} s ago"))
                except (ValueError, KeyError, TypeError):
                    lines.append(("newest clip", "unreadable entry"))
        except redis.exceptions.NoPermissionError:
            lines.append(("newest clip", "n/a (this user may not read the stream)"))
        except redis.RedisError as exc:
            lines.append(("newest clip", f"n/a ({explain_redis_error(exc, cfg)})"))
        try:
            listeners = client.pubsub_numsub(cfg.channel)[0][1]
            lines.append(("listeners", str(listeners)))
        except redis.exceptions.NoPermissionError:
            lines.append(("listeners", "n/a (this user may not run PUBSUB)"))
        except redis.RedisError as exc:
            lines.append(("listeners", f"n/a ({explain_redis_error(exc, cfg)})"))
        return lines, True
    finally:
        client.close()


def gather_status() -> tuple[list[tuple[str, str]], bool]:
    """(name, value) lines for `cb clip status`, and whether everything needed works."""
    cfg = load_config()
    f = env_file()
    lines = [
        ("redis", redact_url(cfg.redis_url) if cfg.redis_url else "not set: cb copy uses OSC 52"),
        ("key", f"set (fingerprint {key_fingerprint(cfg.key)})" if cfg.key else "not set (cb clip keygen --save)"),
        ("channel", cfg.channel),
        ("stream", f"{cfg.stream} (keeps ~{cfg.stream_len})"),
        ("max size", f"{cfg.max_bytes} bytes"),
        ("max age", f"{cfg.max_age_s:g} s"),
        ("config file", f"{f} ({'present' if f.exists() else 'absent'})"),
    ]
    ok = True
    if cfg.redis_url:
        more, ok = _redis_lines(cfg)
        lines += more
        ok = ok and cfg.key is not None
    return lines, ok


def round_trip(timeout_s: float = 5.0) -> str:
    """Publish a signed test clip; if this user may SUBSCRIBE, time it coming back verified."""
    import redis

    cfg = load_config(need_sender=True)
    key = cfg.require_key()
    client = redis_client(cfg, socket_timeout=timeout_s)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    echo = True
    try:
        try:
            pubsub.subscribe(cfg.channel)
            pubsub.get_message(timeout=1.0)  # the confirmation (or a NOPERM error)
        except redis.exceptions.NoPermissionError:
            echo = False
        except redis.RedisError as exc:
            raise explain_redis_error(exc, cfg) from None
        pub = Publisher(cfg)
        t0 = time.perf_counter()
        try:
            result = pub.publish(f"cb clip test from {cfg.sender} at {time.strftime('%H:%M:%S')}")
        finally:
            pub.close()
        sent = f"published test clip seq {result.seq} to {result.receivers} listener(s)"
        if not echo:
            return f"{sent}; this Redis user may not SUBSCRIBE, so no round trip was timed"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                got = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            except redis.RedisError as exc:
                raise explain_redis_error(exc, cfg) from None
            if not got or got.get("type") != "message":
                continue
            try:
                msg = message.decode(got["data"], key, cfg.max_bytes)
            except message.MessageError:
                continue
            if msg.sender == cfg.sender and msg.seq == result.seq:
                ms = (time.perf_counter() - t0) * 1000
                return f"{sent}; came back verified in {ms:.1f} ms"
        raise ClipError(f"{sent}, but it did not come back within {timeout_s:g} s")
    finally:
        pubsub.close()
        client.close()
