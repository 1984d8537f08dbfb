"""Input defusing and named keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentshell.keys import defuse, key_bytes


def test_nested_bracketed_paste_markers_are_removed_until_none_is_left() -> None:
    payload = "echo hi\x1b[20\x1b[201~1~rm -rf ~\r"
    clean, removed = defuse(payload)
    assert "\x1b" not in clean and "[201~rm" in clean and removed > 0


def test_eight_bit_csi_paste_marker_is_removed() -> None:
    assert defuse("a\x9b201~b")[0] == "ab"


def test_plain_text_with_newlines_tabs_and_unicode_passes_unchanged() -> None:
    text = "for f in *.py; do\n\twc -l \"$f\"  # ✓ 日本語 é\ndone\r"
    assert defuse(text) == (text, 0)


@given(st.text())
def test_defused_text_has_no_escape_or_control_and_defusing_is_idempotent(text: str) -> None:
    clean, _ = defuse(text)
    assert not any((ord(ch) < 0x20 and ch not in "\t\n\r") or 0x7F <= ord(ch) <= 0x9F for ch in clean)
    assert defuse(clean) == (clean, 0)


@pytest.mark.parametrize(("name", "expected"), [
    ("Enter", b"\r"), ("C-c", b"\x03"), ("ctrl-d", b"\x04"), ("^Z", b"\x1a"), ("Up", b"\x1b[A"),
    ("M-x", b"\x1bx"), ("F5", b"\x1b[15~"), ("Escape", b"\x1b"), ("hex:1b5b41", b"\x1b[A"), ("BSpace", b"\x7f"),
])
def test_key_names(name: str, expected: bytes) -> None:
    assert key_bytes(name) == expected


@pytest.mark.parametrize("name", ["Hyper-Q", "C-", "hex:zz", ""])
def test_unknown_key_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        key_bytes(name)
