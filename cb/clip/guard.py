"""The subscriber's acceptance policy: which payloads may reach the clipboard.

In order: size cap (before parsing), well-formed and signed with our key (`message.decode`), newer than
the last sequence number applied from that sender (replay), and inside the time window (stale or from
the future). The last sequence number per sender is kept in the state dir, so a restarted listener
still refuses replays; the file is small and rewritten atomically by `save()`, which the listener
calls after the clipboard is set (off the latency path).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cb import paths
from cb.clip import message


def seen_file() -> Path:
    """Where the listener keeps the last sequence number applied per sender."""
    return paths.state_dir() / "clip" / "seen.json"


@dataclass(frozen=True)
class Verdict:
    """Either `msg` (accepted) or `reason` + `detail` (refused). `missed` = sequence gap before it."""

    msg: message.ClipMessage | None
    reason: str = ""
    detail: str = ""
    missed: int = 0

    @property
    def accepted(self) -> bool:
        return self.msg is not None


class Guard:
    """Verifies payloads and remembers the last accepted sequence number of each sender."""

    def __init__(self, key: bytes, max_bytes: int, max_age_s: float, state_path: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.max_bytes = max_bytes
        self.max_age_ms = int(max_age_s * 1000)
        self.state_path = state_path
        self.clock = clock
        self.last_seq: dict[str, int] = self._load()
        self._fd: int | None = None
        self._written = 0

    def _load(self) -> dict[str, int]:
        if self.state_path is None:
            return {}
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in data.get("last_seq", {}).items()}
        except (FileNotFoundError, ValueError, AttributeError, TypeError):
            return {}

    def save(self) -> None:
        """Persist the last sequence numbers: one in-place `pwrite` of the JSON, padded with spaces to the
        previous length (no truncate or rename: those cost milliseconds per clip on some disks). A torn
        file reads as empty, which only forgets replay state older than the age window anyway."""
        if self.state_path is None:
            return
        data = json.dumps({"last_seq": self.last_seq}).encode("utf-8")
        if self._fd is None:
            paths.ensure_dir(self.state_path.parent)
            self._fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._written = os.fstat(self._fd).st_size
        os.pwrite(self._fd, data.ljust(self._written), 0)
        self._written = max(self._written, len(data))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def check(self, payload: bytes) -> Verdict:
        """Decide on one payload; an accepted one advances its sender's sequence number."""
        try:
            msg = message.decode(payload, self.key, self.max_bytes)
        except message.MessageError as exc:
            return Verdict(None, exc.reason, str(exc))
        last = self.last_seq.get(msg.sender)
        if last is not None and msg.seq <= last:
            return Verdict(None, "replayed", f"message {msg.seq} from {msg.sender} is not after {last}")
        age_ms = int(self.clock() * 1000) - msg.ts_ms
        if age_ms > self.max_age_ms:
            return Verdict(None, "stale", f"message {msg.seq} from {msg.sender} is {age_ms / 1000:.0f} s old")
        if -age_ms > self.max_age_ms:
            return Verdict(None, "stale", f"message {msg.seq} from {msg.sender} is dated {-age_ms / 1000:.0f} s "
                                          "in the future (clock skew?)")
        missed = msg.seq - last - 1 if last is not None else 0
        self.last_seq[msg.sender] = msg.seq
        return Verdict(msg, missed=missed)
