"""The sanitizer neutralises every terminal-interpretable character, wherever a stream is split (T1, T2, T9).

Run: .venv/bin/python -m pytest tests/cb/test_sanitize.py -q
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cb.sanitize import StreamSanitizer, sanitize

# What a terminal could act on: ESC, C0 but tab/newline, DEL, C1, bidi overrides/isolates.
DANGEROUS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

PAYLOADS = {
    "osc52_bel": "\x1b]52;c;aGVsbG8=\x07",
    "osc52_st": "\x1b]52;c;aGVsbG8=\x1b\\",
    "osc2_title": "\x1b]2;pwned\x07",
    "osc8_link": "\x1b]8;;https://evil.example\x1b\\https://good.example\x1b]8;;\x1b\\",
    "csi_clear": "\x1b[2J",
    "csi_up_erase": "\x1b[1A\x1b[2K",
    "csi_query": "\x1b[6n",
    "dcs": "\x1bP+q544e\x1b\\",
    "apc": "\x1b_Gf=100;AAAA\x1b\\",
    "reset": "\x1bc",
    "c1_csi": "\x9b2J",
    "c1_osc": "\x9d52;c;aGk=\x9c",
    "bidi": "if admin\u202e {\u2066",
}

# Arbitrary text, biased toward the characters that matter here.
texty = st.text(alphabet=st.one_of(
    st.sampled_from([*"\x1b\x07\x9b\x9d\x9c\r\n\t]52;[A\\\u202e\u2066", "é", "🙂", "中"]),
    st.characters(),
))


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def test_every_payload_is_shown_visibly_and_nothing_interpretable_remains() -> None:
    for name, payload in PAYLOADS.items():
        out = sanitize(f"before {payload} after")
        assert not DANGEROUS.search(out), name
        assert out.startswith("before ") and out.endswith(" after"), name
    assert sanitize(PAYLOADS["osc52_bel"]) == "␛]52;c;aGVsbG8=␇"
    assert sanitize(PAYLOADS["c1_csi"]) == "⟨U+009B⟩2J"
    assert sanitize(PAYLOADS["bidi"]) == "if admin⟨U+202E⟩ {⟨U+2066⟩"
    assert sanitize("a\ud800b").encode("utf-8") == "a⟨U+D800⟩b".encode()


def test_crlf_becomes_newline_and_a_lone_cr_is_visible() -> None:
    assert sanitize("a\r\nb\rc") == "a\nb␍c"


@settings(max_examples=400)
@given(texty)
def test_output_has_no_controls_and_is_idempotent(text: str) -> None:
    out = sanitize(text)
    assert not DANGEROUS.search(out)
    assert sanitize(out) == out


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"),
                                      blacklist_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")))
def test_text_without_controls_passes_unchanged(text: str) -> None:
    assert sanitize(text) == text
    assert sanitize("中文 🙂 e\u0301 \u200d") == "中文 🙂 e\u0301 \u200d"


@settings(max_examples=400)
@given(texty, st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_streamed_text_split_anywhere_equals_whole(text: str, cuts: list[int]) -> None:
    s = StreamSanitizer()
    streamed = "".join(s.feed(part) for part in _split(text, cuts)) + s.flush()
    assert streamed == sanitize(text)


@settings(max_examples=300)
@given(texty, st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_streamed_bytes_split_inside_utf8_characters_lose_and_double_nothing(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8", "surrogatepass") if not any(0xD800 <= ord(c) < 0xE000 for c in text) else b"x"
    expected = sanitize(data.decode("utf-8"))
    s = StreamSanitizer()
    points = sorted({min(c, len(data)) for c in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert "".join(s.feed_bytes(p) for p in parts) + s.flush() == expected


def test_payload_split_between_esc_and_bracket_is_still_neutralised() -> None:
    s = StreamSanitizer()
    out = s.feed("look\x1b") + s.feed("]52;c;aGk=\x07") + s.feed("\r") + s.feed("\n") + s.flush()
    assert out == "look␛]52;c;aGk=␇\n"


def test_long_unterminated_sequence_is_linear() -> None:
    s = StreamSanitizer()
    chunk = "\x1b]" * 2048
    out = "".join(s.feed(chunk) for _ in range(500)) + s.flush()
    assert len(out) == 2 * 2048 * 500


def test_the_three_renderers_share_one_table_of_stand_ins() -> None:
    from cb.clip.sanitize import sanitize as clip_sanitize
    from tools import visible
    from tools.controls import CONTROLS, INVISIBLE, STAND_INS

    assert STAND_INS[0x1B] == "␛" and STAND_INS[0x7F] == "␡" and STAND_INS[0x202E] == "⟨U+202E⟩"
    for code, stand_in in STAND_INS.items():
        char = chr(code)
        # the terminal renderer and the edit preview show the same stand-in; the clipboard removes the character
        expected = char if char in "\t\n" or code in INVISIBLE else ("␍" if char == "\r" else stand_in)
        assert sanitize(f"a{char}b") == f"a{expected}b", hex(code)
        assert visible(f"a{char}b") == ("a\tb" if char == "\t" else f"a{stand_in}b"), hex(code)
        if code in CONTROLS and char not in "\t\n\r":
            assert clip_sanitize(f"a{char}").text == "a", hex(code)
