"""Clipboard-bridge settings: the environment first, then `clip.env` in cb's config dir.

| variable              | meaning                                                      | default            |
|-----------------------|--------------------------------------------------------------|--------------------|
| CB_REDIS_URL          | redis://[user:pass@]host:port[/db] or rediss:// (TLS)        | unset = OSC 52     |
| CB_CLIP_KEY           | the shared HMAC key (`cb clip keygen` makes one)             | required for Redis |
| CB_CLIP_CHANNEL       | the pub/sub channel                                          | clipboard          |
| CB_CLIP_STREAM        | the capped stream a returning listener catches up from       | <channel>:stream   |
| CB_CLIP_STREAM_LEN    | entries kept in the stream (XADD MAXLEN ~)                   | 100                |
| CB_CLIP_MAX_BYTES     | the size cap on a clip, both sides                           | 1048576 (1 MiB)    |
| CB_CLIP_MAX_AGE       | seconds after which a clip is stale and refused              | 120                |
| CB_CLIP_SENDER        | this box's sender name                                       | host name + random |
| CB_REDIS_CA           | CA bundle (PEM) to verify a rediss:// server with            | the system's CAs   |
| CB_CLIP_ALLOW_PLAINTEXT | 1 = allow redis:// (no TLS) to a host that is not loopback | 0                  |

`clip.env` holds `NAME=value` lines with the same names (written 0600, atomically; `cb clip keygen --save`
writes the key there), so a login service needs no secrets on its command line; one that others can read is
warned of when it holds the key or a Redis password. The subscriber's timing
knobs (ping interval, backoff) are fields of `ListenTiming`, set by tests and `cb clip listen` flags.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cb import paths
from cb.clip.errors import ClipError
from cb.private import warn_if_readable, write_private

DEFAULT_CHANNEL = "clipboard"
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_AGE_S = 120.0
DEFAULT_STREAM_LEN = 100
MIN_KEY_CHARS = 16


class ClipConfigError(ClipError):
    """A setting that cannot work; the message is one line for the user."""


def env_file() -> Path:
    """`clip.env` in cb's config dir: NAME=value lines read after the environment."""
    return paths.config_dir() / "clip.env"


def read_env_file(path: Path | None = None) -> dict[str, str]:
    """The NAME=value pairs of `clip.env` (missing file = empty); `#` comments and blank lines skipped."""
    path = path or env_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name.strip().removeprefix("export ").strip()] = value
    if _holds_secret(out):
        warn_if_readable(path, "the clipboard key or a Redis password")
    return out


def _holds_secret(values: dict[str, str]) -> bool:
    """Whether these settings hold the clipboard key or a Redis URL with a password."""
    try:
        password = urllib.parse.urlsplit(values.get("CB_REDIS_URL", "")).password
    except ValueError:  # a malformed URL is load_config's to report
        password = None
    return bool(values.get("CB_CLIP_KEY") or password)


def write_env_value(name: str, value: str, path: Path | None = None) -> Path:
    """Set `name=value` in `clip.env` (replacing an existing line), written 0600 atomically."""
    path = path or env_file()
    paths.ensure_dir(path.parent)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    kept = [ln for ln in lines if ln.strip().removeprefix("export ").partition("=")[0].strip() != name]
    kept.append(f"{name}={value}")
    write_private(path, "\n".join(kept) + "\n")
    return path


def new_key() -> str:
    """A fresh random key: 32 bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def _default_sender() -> str:
    """A stable sender name for this box: host name plus a random suffix kept in the state dir."""
    f = paths.state_dir() / "clip" / "sender"
    try:
        name = f.read_text(encoding="ascii").strip()
        if name:
            return name
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    host = "".join(c for c in socket.gethostname().split(".")[0] if c.isalnum() or c in "-_")[:40] or "host"
    name = f"{host}-{secrets.token_hex(3)}"
    paths.ensure_dir(f.parent)
    f.write_text(name + "\n", encoding="ascii")
    return name


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_url(url: str, allow_plaintext: bool = False) -> str:
    """Check a Redis URL; refuse plaintext redis:// to a host that is not loopback unless allowed."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ClipConfigError(f"CB_REDIS_URL must start with redis:// or rediss://, not {parsed.scheme or url!r}")
    if not parsed.hostname:
        raise ClipConfigError("CB_REDIS_URL has no host")
    if parsed.scheme == "redis" and not allow_plaintext and not _is_loopback(parsed.hostname):
        raise ClipConfigError(f"refusing plaintext redis:// to {parsed.hostname}: use rediss:// (TLS), "
                              "or set CB_CLIP_ALLOW_PLAINTEXT=1 on a trusted network")
    return url


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return url
    user = parsed.username or ""
    host = parsed.hostname or ""
    if parsed.port:
        host = f"{host}:{parsed.port}"
    return urllib.parse.urlunsplit((parsed.scheme, f"{user}:***@{host}", parsed.path, parsed.query, ""))


@dataclass(frozen=True)
class ClipConfig:
    """Everything both sides need: where Redis is, the key, names and limits."""

    redis_url: str | None
    key: bytes | None
    channel: str = DEFAULT_CHANNEL
    stream: str = f"{DEFAULT_CHANNEL}:stream"
    stream_len: int = DEFAULT_STREAM_LEN
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age_s: float = DEFAULT_MAX_AGE_S
    sender: str = ""
    connect_timeout_s: float = 2.0
    ca_file: str | None = None

    def require_key(self) -> bytes:
        if not self.key:
            raise ClipConfigError("no clipboard key: set CB_CLIP_KEY (make one with `cb clip keygen --save`)")
        return self.key

    def require_url(self) -> str:
        if not self.redis_url:
            raise ClipConfigError("no Redis configured: set CB_REDIS_URL (e.g. rediss://user:pass@host:6380)")
        return self.redis_url


def _number(values: dict[str, str], name: str, default: float, minimum: float) -> float:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ClipConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ClipConfigError(f"{name}={raw} must be at least {minimum:g}")
    return value


def load_config(environ: dict[str, str] | None = None, need_sender: bool = False) -> ClipConfig:
    """Read the settings (environment over `clip.env`) and validate them."""
    values = {**read_env_file(), **dict(os.environ if environ is None else environ)}
    url = values.get("CB_REDIS_URL", "").strip() or None
    if url:
        validate_url(url, values.get("CB_CLIP_ALLOW_PLAINTEXT", "").strip() in ("1", "true", "yes"))
    key_text = values.get("CB_CLIP_KEY", "").strip()
    if key_text and len(key_text) < MIN_KEY_CHARS:
        raise ClipConfigError(f"CB_CLIP_KEY is too short ({len(key_text)} chars, need {MIN_KEY_CHARS}+); "
                              "make one with `cb clip keygen`")
    channel = values.get("CB_CLIP_CHANNEL", "").strip() or DEFAULT_CHANNEL
    ca_file = values.get("CB_REDIS_CA", "").strip() or None
    if ca_file and not Path(ca_file).expanduser().is_file():
        raise ClipConfigError(f"CB_REDIS_CA={ca_file}: no such file")
    sender = values.get("CB_CLIP_SENDER", "").strip()
    if need_sender and not sender:
        sender = _default_sender()
    return ClipConfig(
        redis_url=url,
        key=key_text.encode("utf-8") if key_text else None,
        channel=channel,
        stream=values.get("CB_CLIP_STREAM", "").strip() or f"{channel}:stream",
        stream_len=int(_number(values, "CB_CLIP_STREAM_LEN", DEFAULT_STREAM_LEN, 1)),
        max_bytes=int(_number(values, "CB_CLIP_MAX_BYTES", DEFAULT_MAX_BYTES, 1)),
        max_age_s=_number(values, "CB_CLIP_MAX_AGE", DEFAULT_MAX_AGE_S, 1),
        sender=sender,
        ca_file=str(Path(ca_file).expanduser()) if ca_file else None,
    )


@dataclass(frozen=True)
class ListenTiming:
    """The subscriber's clocks, in seconds. Defaults notice a half-open link in ≤ ping + pong timeout."""

    ping_interval_s: float = 3.0      # send a PING when nothing arrived for this long
    pong_timeout_s: float = 4.0       # no reply (PONG or message) this long after a PING = dead link
    backoff_min_s: float = 0.5        # first reconnect delay
    backoff_max_s: float = 30.0       # reconnect delays double up to this
