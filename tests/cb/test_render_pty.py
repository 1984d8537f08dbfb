"""Terminal safety of the real pipeline in a real PTY (T1, T4): escape payloads in streamed Markdown never
reach the terminal; NO_COLOR, TERM=dumb and narrow terminals behave. The screen is checked with pyte.

Run: .venv/bin/python -m pytest tests/cb/test_render_pty.py -q
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pyte
import pytest

from tests.cb.scripted_server import Reply, ScriptedServer

CB = str(Path(sys.executable).parent / "cb")

# Each T1 payload, split so that the ESC ends one SSE delta and the rest starts the next (T2 end to end).
PAYLOADS = [
    "\x1b]52;c;aGVsbG8=\x07", "\x1b]52;c;aGVsbG8=\x1b\\", "\x1b]2;PWNED-TITLE\x07",
    "\x1b]8;;https://evil.example\x1b\\good\x1b]8;;\x1b\\", "\x1b[2J", "\x1b[1A\x1b[2K", "\x1b[6n",
    "\x1bP+q544e\x1b\\", "\x1b_Gf=100\x1b\\", "\x1bc", "\x9b2J", "\x9d0;x\x9c",
    "[bold red]FAKE: tests passed[/]", "[link=https://evil]x[/link]", "[/]",
]
# What cb itself writes on a terminal: SGR styling, and the live region's hide/show cursor, erase line, up.
OWN = re.compile(rb"\x1b\[[0-9;]*m|\x1b\[\?25[lh]|\x1b\[2K|\x1b\[1A")


def _pieces() -> list[str]:
    out = ["# Report\n\nSome **bold** text.\n\n"]
    for p in PAYLOADS:
        out += [f"payload {p[:1]}", f"{p[1:]} end\n\n"]
    out += ["```python\nprint('x')  # \x1b[31mred\n```\n", "done\n"]
    return out


def _run(server: ScriptedServer, cols: int = 80, **env: str) -> bytes:
    full_env = {**os.environ, "CB_BASE_URL": server.base_url, "TERM": "xterm-256color", **env}
    child = pexpect.spawn(CB, ["q"], env=full_env, dimensions=(50, cols), timeout=30)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before


@pytest.mark.integration
def test_escape_payloads_in_streamed_markdown_never_reach_the_terminal(scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(_pieces(), delay=0.005))
    data = _run(scripted)
    leftover = OWN.sub(b"", data)
    assert b"\x1b" not in leftover
    text = data.decode("utf-8")
    assert not re.search(r"[\x80-\x9f]", text)
    screen = pyte.Screen(80, 50)
    pyte.ByteStream(screen).feed(data)
    shown = "\n".join(screen.display)
    assert screen.title == "" and "PWNED" not in screen.title
    for marker in ("␛]52;c;aGVsbG8=␇", "␛]2;PWNED-TITLE␇", "␛[2J", "␛[6n", "⟨U+009B⟩2J",
                   "[bold red]FAKE: tests passed[/]", "[link=https://evil]x[/link]", "␛[31mred"):
        assert marker in shown, marker
    assert "Report" in shown and "done" in shown


@pytest.mark.integration
def test_no_color_drops_colours(scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(["```python\nprint('x')\n```\n"]))
    data = _run(scripted, NO_COLOR="1")
    assert not re.search(rb"\x1b\[[0-9;]*(3[0-9]|4[0-9]|38;5|48;5)[;m]", data)
    assert b"print('x')" in data


@pytest.mark.integration
def test_dumb_terminal_gets_plain_text(scripted: ScriptedServer) -> None:
    scripted.enqueue(Reply(["**plain** \x1b]2;t\x07 text\n"]))
    data = _run(scripted, TERM="dumb")
    assert b"\x1b" not in data
    assert "**plain** ␛]2;t␇ text" in data.decode()


@pytest.mark.integration
def test_narrow_terminal_wraps_without_losing_words(scripted: ScriptedServer) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    scripted.enqueue(Reply([words[:50], words[50:] + "\n"]))
    data = _run(scripted, cols=20)
    screen = pyte.Screen(20, 50)
    pyte.ByteStream(screen).feed(data)
    shown = " ".join(" ".join(screen.display).split())
    assert words in shown


def test_untrusted_text_has_one_way_to_the_terminal() -> None:
    """T3: no `Text.from_ansi` anywhere in cb (it re-emits OSC 8 links), every Markdown without hyperlinks."""
    root = Path(__file__).resolve().parents[2] / "cb"
    for path in root.rglob("*.py"):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        calls = re.findall(r"\bMarkdown\(([^\n]*)", code)
        assert ".from_ansi(" not in code, path
        assert all("hyperlinks=False" in c for c in calls), path
