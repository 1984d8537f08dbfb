"""The agentshell tabs as the tabs page shows them: a snapshot of every tab's tail, watched for changes.

Reads never start the daemon (no daemon: no tabs) and never mark output as seen (the page is not the
prompt: `cb`'s "new since you last looked" marker stays the model's). The tails are the daemon's plain-text
rendering (escape sequences interpreted); the page escapes them again on the way out. Starting a tab (the
person's own command, typed on the page) starts the daemon when needed, like `cb tab run`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentshell.client import Client
from agentshell.protocol import AgentshellError, TabInfo

TAIL_LINES = 60
POLL_S = 0.25


@dataclass(frozen=True)
class TabView:
    info: TabInfo
    lines: tuple[str, ...]

    @property
    def state(self) -> str:
        t = self.info
        return t.status if t.exit_code is None else f"{t.status}, exit {t.exit_code}"


def _client(autostart: bool = False) -> Client:
    return Client.connect(autostart=autostart, timeout=5.0, client_name="cb-web")


def snapshot() -> list[TabView]:
    """Every tab with its last TAIL_LINES lines; [] when the daemon is not running."""
    try:
        with _client() as sh:
            return _views(sh)
    except (AgentshellError, OSError):
        return []


def _views(sh: Client) -> list[TabView]:
    return [TabView(t, tuple(sh.tail(t.id, lines=TAIL_LINES, mark_seen=False).lines)) for t in sh.ls()]


def watch(stop: threading.Event, heartbeat: int = 20) -> Iterator[list[TabView] | None]:
    """A snapshot whenever a tab is added, removed, writes or changes state (the first at once), and None
    after every `heartbeat` quiet polls (so the caller notices a reader that left), until `stop` is set."""
    last: tuple[tuple[int, str, int], ...] | None = None
    sh: Client | None = None
    quiet = 0
    try:
        while not stop.is_set():
            views: list[TabView] | None = None
            try:
                if sh is None:
                    sh = _client()
                tabs = sh.ls()
                key = tuple((t.id, t.status, t.end_offset) for t in tabs)
                if key != last:
                    last, views = key, _views(sh)
            except (AgentshellError, OSError):
                if sh is not None:
                    sh.close()
                    sh = None
                if last != ():
                    last, views = (), []
            quiet = 0 if views is not None else quiet + 1
            if views is not None or quiet >= heartbeat:
                quiet = 0
                yield views
            stop.wait(POLL_S)
    finally:
        if sh is not None:
            sh.close()


def start(command: str, name: str | None, cwd: Path) -> TabInfo:
    """A new tab running `command` through the user's shell (`cb tab run`), in `cwd`."""
    with _client(autostart=True) as sh:
        return sh.run(command, name=name or None, cwd=cwd)


def kill(tab: str) -> TabInfo:
    with _client() as sh:
        return sh.kill(tab)
