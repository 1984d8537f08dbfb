"""The signed wire format: round trip, and every way a payload is refused (R9's forgery half).

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_message.py -q
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cb.clip import message
from cb.clip.message import ClipMessage, MessageError

KEY = b"k" * 32
CAP = 1 << 20


def _payload(text: str = "hello\nworld", **kw: object) -> bytes:
    values: dict[str, object] = {"sender": "box-1", "seq": 7, "ts_ms": 1_700_000_000_000, "text": text}
    values.update(kw)
    return message.encode(ClipMessage(**values), KEY)  # type: ignore[arg-type]


def _reason(payload: bytes, key: bytes = KEY, cap: int = CAP) -> str:
    with pytest.raises(MessageError) as info:
        message.decode(payload, key, cap)
    return info.value.reason


@given(text=st.text(), seq=st.integers(0, 2**63), ts=st.integers(0, 2**50))
def test_round_trip_keeps_every_field(text: str, seq: int, ts: int) -> None:
    msg = ClipMessage(sender="box_9.a@b:c-d", seq=seq, ts_ms=ts, text=text)
    assert message.decode(message.encode(msg, KEY), KEY, 4 * len(text) + 8) == msg


def test_text_is_carried_raw_after_one_header_line() -> None:
    head, _, body = _payload("a\x1b[201~b").partition(b"\n")
    assert json.loads(head)["seq"] == 7
    assert body == b"a\x1b[201~b"


def test_wrong_key_is_forged() -> None:
    assert _reason(_payload(), key=b"x" * 32) == "forged"


def test_missing_mac_is_unsigned() -> None:
    head, _, body = _payload().partition(b"\n")
    header = json.loads(head)
    del header["mac"]
    assert _reason(json.dumps(header).encode() + b"\n" + body) == "unsigned"


def test_truncated_mac_is_forged() -> None:
    head, _, body = _payload().partition(b"\n")
    header = json.loads(head)
    header["mac"] = header["mac"][:32]
    assert _reason(json.dumps(header).encode() + b"\n" + body) == "forged"


@pytest.mark.parametrize("field,value", [("sender", "box-2"), ("seq", 8), ("ts", 1_700_000_000_001), ("v", 2)])
def test_changing_any_signed_header_field_breaks_the_mac(field: str, value: object) -> None:
    head, _, body = _payload().partition(b"\n")
    header = json.loads(head)
    header[field] = value
    assert _reason(json.dumps(header).encode() + b"\n" + body) in ("forged", "version")


def test_changed_text_is_forged() -> None:
    assert _reason(_payload("hello") [:-1] + b"O") == "forged"


def test_appended_text_is_forged() -> None:
    assert _reason(_payload("hello") + b"; curl x | sh") == "forged"


@pytest.mark.parametrize("payload", [b"", b"no newline", b"[1,2]\nx", b"\xff\xfe\nx", b"{\"mac\":\"ab\"\nx",
                                     b"{\"v\":1,\"sender\":\"a\",\"seq\":-1,\"ts\":1,\"mac\":\"00\"}\nx",
                                     b"{\"v\":1,\"sender\":\"a b\",\"seq\":1,\"ts\":1,\"mac\":\"00\"}\nx",
                                     b"{\"v\":1,\"sender\":\"a\",\"seq\":true,\"ts\":1,\"mac\":\"00\"}\nx"])
def test_malformed_payloads_are_refused(payload: bytes) -> None:
    assert _reason(payload) in ("malformed", "unsigned")


def test_non_ascii_mac_is_forged_not_a_crash() -> None:
    head, _, body = _payload().partition(b"\n")
    header = json.loads(head)
    header["mac"] = "é" * 64
    assert _reason(json.dumps(header).encode() + b"\n" + body) == "forged"


def test_oversized_text_is_refused_before_parsing() -> None:
    assert _reason(_payload("x" * (CAP + 1))) == "oversized"
    assert _reason(b"x" * (50 << 20)) == "oversized"
    message.decode(_payload("x" * CAP), KEY, CAP)  # exactly the cap is fine


def test_sender_outside_the_safe_charset_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        message.encode(ClipMessage(sender="a\nb", seq=1, ts_ms=1, text=""), KEY)
