"""The clipboard sanitiser: R10's paste-hijack payloads, and properties over arbitrary text.

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_sanitize.py -q
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cb.clip.sanitize import notice_line, sanitize

FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("payload,expected", [
    ("echo ok\x1b[201~rm -rf ~\r", "echo okrm -rf ~"),            # bracketed-paste end marker + CR
    ("a\x1b\x1b[201~[201~b", "a[201~b"),                          # nested (wezterm #7784): no ESC survives
    ("\x1b[200~ls\x1b[201~", "ls"),
    ("x\x1b]52;c;Y3VybCB4fHNo\x07y", "xy"),                        # OSC 52 with BEL
    ("x\x1b]52;c;Y3VybA==\x1b\\y", "xy"),                         # OSC 52 with ST
    ("x\x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\", "xlink"),   # OSC 8
    ("a\x9b31mb", "ab"),                                           # C1 CSI
    ("a\x9d0;title\x9cb", "ab"),                                   # C1 OSC + C1 ST
    ("a\x00b\x08c\x7fd", "abcd"),                                  # NUL, BS, DEL
    ("ls\n", "ls"),                                                # trailing newline: no auto-Enter
    ("ls\r\n\r\n", "ls"),
    ("one\r\ntwo\rthree", "one\ntwo\nthree"),
    ("access\u202e\u2066 level", "access level"),                  # Trojan Source bidi controls
    ("a\x1b[20\x001~b", "a201~b"),                                 # NUL inside a marker: no ESC survives
    ("tab\tkept\nnewline kept", "tab\tkept\nnewline kept"),
    ("x\x1b]52;c;unterminated rest", "x"),                         # an unterminated string swallows the rest
    ("日本語 émoji 🎉 e\u0301", "日本語 émoji 🎉 e\u0301"),
])
def test_payloads(payload: str, expected: str) -> None:
    assert sanitize(payload).text == expected


def test_reports_what_was_removed() -> None:
    result = sanitize("echo ok\x1b[201~rm\n")
    assert result.removed == 6 and result.dropped_trailing_newline
    assert sanitize("plain").removed == 0 and not sanitize("plain").dropped_trailing_newline


PIECES = st.sampled_from(["\x1b", "[", "]", "201~", "200~", "\x9b", "\x9c", "\x07", "\x1b\\", "\r", "\n", "52;c;",
                          "\x00", "\u202e"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=4) | PIECES, max_size=30))
def test_output_has_no_controls_and_is_a_fixed_point(parts: list[str]) -> None:
    out = sanitize("".join(parts)).text
    assert not FORBIDDEN.search(out)
    assert not out.endswith("\n")
    assert sanitize(out).text == out


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u202a\u202b\u202c"
                                      "\u202d\u202e\u2066\u2067\u2068\u2069")))
def test_text_without_controls_passes_unchanged(text: str) -> None:
    assert sanitize(text).text == text


def test_notice_line_shows_first_line_and_line_count() -> None:
    assert notice_line("def f():\n    return 1") == "'def f():' (2 lines, 21 bytes)"
    assert notice_line("x" * 100).startswith("'" + "x" * 59 + "…'")
    assert "(1 line," in notice_line("one")
