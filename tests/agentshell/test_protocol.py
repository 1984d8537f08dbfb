"""The wire protocol: frames, request validation, typed errors (no daemon needed)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentshell import protocol as p


def test_frame_round_trips_a_message_with_non_ascii_text() -> None:
    frame = p.encode_frame({"id": 1, "op": "send", "args": {"tab": "1", "text": "héllo ✓"}})
    length = p.frame_length(frame[:4], p.MAX_REQUEST_FRAME)
    assert length == len(frame) - 4
    assert p.decode_body(frame[4:])["args"]["text"] == "héllo ✓"


def test_oversize_length_prefix_is_refused_from_the_header_alone() -> None:
    with pytest.raises(p.ProtocolError, match="over the limit"):
        p.frame_length((2**31).to_bytes(4, "big"), p.MAX_REQUEST_FRAME)


@pytest.mark.parametrize("body", [b"\xff\xfe", b"not json", b"[1, 2]", b'"text"'])
def test_bodies_that_are_not_json_objects_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode_body(body)


def test_parse_request_builds_the_typed_request() -> None:
    request_id, request = p.parse_request({"id": 7, "op": "wait", "args": {"tab": "dev", "pattern": "ready",
                                                                          "timeout": 3}})
    assert request_id == 7
    assert request == p.Wait(tab="dev", pattern="ready", timeout=3)


@pytest.mark.parametrize(("message", "error"), [
    ({"op": "ping"}, "integer 'id'"),
    ({"id": True, "op": "ping"}, "integer 'id'"),
    ({"id": 1, "op": "format_disk"}, "unknown op"),
    ({"id": 1, "op": "send", "args": {}}, "missing argument 'tab'"),
    ({"id": 1, "op": "send", "args": {"tab": 1}}, "wrong type"),
    ({"id": 1, "op": "send", "args": {"tab": "1", "keys": ["Enter", 3]}}, "wrong type"),
    ({"id": 1, "op": "new", "args": {"cols": True}}, "wrong type"),
    ({"id": 1, "op": "new", "args": {"env": {"A": 1}}}, "wrong type"),
    ({"id": 1, "op": "new", "args": {"shell": "sh"}}, "unknown argument"),
    ({"id": 1, "op": "ping", "args": []}, "not an object"),
    ({"id": 1, "op": "wait", "args": {"tab": "1", "timeout": float("nan")}}, "wrong type"),
    ({"id": 1, "op": "wait", "args": {"tab": "1", "idle": float("inf")}}, "wrong type"),
])
def test_parse_request_rejects_malformed_requests(message: dict, error: str) -> None:
    with pytest.raises(p.AgentshellError, match=error):
        p.parse_request(message)


def test_every_request_survives_the_wire() -> None:
    for cls in p.REQUESTS.values():
        fields = {"tab": "1", "version": 1, "signal": "INT", "cols": 80, "rows": 24, "name": "x"}
        names = {f for f in cls.__dataclass_fields__}
        request = cls(**{k: v for k, v in fields.items() if k in names})
        frame = json.loads(p.encode_frame(p.request_frame(3, request))[4:])
        assert p.parse_request(frame) == (3, request)


def test_error_codes_map_to_their_exception_classes() -> None:
    assert isinstance(p.error_for("no_such_tab", "no tab 9"), p.NoSuchTab)
    assert isinstance(p.error_for("timeout", "late"), p.WaitTimeout)
    unknown = p.error_for("from_the_future", "hm")
    assert type(unknown) is p.AgentshellError and unknown.code == "from_the_future"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=12)


@given(st.dictionaries(st.sampled_from(["id", "op", "args", "extra"]),
                       json_values | st.sampled_from(sorted(p.REQUESTS)), max_size=4))
def test_parse_request_only_ever_raises_agentshell_errors(message: dict) -> None:
    with contextlib.suppress(p.AgentshellError):
        p.parse_request(message)


@given(st.sampled_from(sorted(p.REQUESTS)), st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_random_arguments_are_validated_not_trusted(op: str, args: dict) -> None:
    try:
        _, request = p.parse_request({"id": 1, "op": op, "args": args})
    except p.AgentshellError:
        return
    assert type(request) is p.REQUESTS[op]
