"""The clipboard bridge's wire format and its HMAC-SHA256 signature.

A message is one bytes payload, the same on the pub/sub channel and in the stream:

    {"v":1,"sender":"box-3f2a","seq":17,"ts":1732380000123,"mac":"<64 hex>"}\\n<text as UTF-8>

The header is one line of JSON; the text follows raw, so a 1 MiB clip costs 1 MiB plus ~120 bytes and
needs no escaping. The MAC covers version, sender, sequence number, timestamp (ms) and text, framed so
that no two different messages sign the same bytes (sender is restricted to a safe charset, the text
is last and its length is fixed by the payload).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass

VERSION = 1
MAX_HEADER_BYTES = 1024
SENDER_RE = re.compile(r"[A-Za-z0-9._@:-]{1,64}")
_DOMAIN = b"cb-clip\x00"


class MessageError(ValueError):
    """A payload that is not a well-formed, correctly signed message. `reason` is a short tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ClipMessage:
    """One signed clip: who sent it, its per-sender sequence number, when (Unix ms) and the text."""

    sender: str
    seq: int
    ts_ms: int
    text: str
    version: int = VERSION


def _signed_bytes(version: int, sender: str, seq: int, ts_ms: int, text: bytes) -> bytes:
    head = f"{version}\n{sender}\n{seq}\n{ts_ms}\n".encode("ascii")
    return _DOMAIN + head + text


def compute_mac(key: bytes, msg: ClipMessage) -> str:
    """The hex HMAC-SHA256 of `msg` under `key`."""
    data = _signed_bytes(msg.version, msg.sender, msg.seq, msg.ts_ms, msg.text.encode("utf-8"))
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def encode(msg: ClipMessage, key: bytes) -> bytes:
    """Sign `msg` with `key` and return the payload to publish."""
    if not SENDER_RE.fullmatch(msg.sender):
        raise ValueError(f"sender {msg.sender!r} must match {SENDER_RE.pattern}")
    header = {"v": msg.version, "sender": msg.sender, "seq": msg.seq, "ts": msg.ts_ms, "mac": compute_mac(key, msg)}
    return json.dumps(header, separators=(",", ":")).encode("ascii") + b"\n" + msg.text.encode("utf-8")


def decode(payload: bytes, key: bytes, max_text_bytes: int) -> ClipMessage:
    """Parse and verify `payload`; raise MessageError(reason=...) for anything not accepted.

    Reasons: "oversized", "malformed", "unsigned", "version", "forged". Size is checked before any
    parsing, and the MAC with `hmac.compare_digest` before the text is decoded.
    """
    if len(payload) > max_text_bytes + MAX_HEADER_BYTES:
        raise MessageError("oversized", f"message of {len(payload)} bytes exceeds the {max_text_bytes}-byte cap")
    head, sep, body = payload.partition(b"\n")
    if not sep or len(head) > MAX_HEADER_BYTES:
        raise MessageError("malformed", "no header line")
    if len(body) > max_text_bytes:
        raise MessageError("oversized", f"text of {len(body)} bytes exceeds the {max_text_bytes}-byte cap")
    try:
        header = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError("malformed", f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MessageError("malformed", "header is not a JSON object")
    mac = header.get("mac")
    if not isinstance(mac, str) or not mac:
        raise MessageError("unsigned", "message carries no signature")
    version, sender, seq, ts_ms = header.get("v"), header.get("sender"), header.get("seq"), header.get("ts")
    if version != VERSION or isinstance(version, bool):
        raise MessageError("version", f"unsupported message version {version!r}")
    if not isinstance(sender, str) or not SENDER_RE.fullmatch(sender):
        raise MessageError("malformed", "bad sender field")
    for name, value in (("seq", seq), ("ts", ts_ms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MessageError("malformed", f"bad {name} field")
    expected = hmac.new(key, _signed_bytes(version, sender, seq, ts_ms, body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac.lower() if mac.isascii() else ""):
        raise MessageError("forged", f"bad signature on message {seq} from {sender}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("malformed", "text is not UTF-8") from None
    return ClipMessage(sender=sender, seq=seq, ts_ms=ts_ms, text=text, version=version)
