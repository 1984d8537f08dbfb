"""Constrained decoding over a real `ulm serve` on the tiny random-weight model: whatever a random model
would write, the answer under a grammar (Lark, GBNF, cb's edit grammar), a JSON schema or a tool_choice is
valid; constrained and unconstrained requests share a batch without changing each other's tokens; every
field the server cannot honour is a 400 naming it.

Run: .venv/bin/python -m pytest tests/ulm/server/test_structured.py -q
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cb.grammar import edit_grammar
from tests.ulm.server.conftest import BASE_ARGS
from tests.ulm.server.harness import API_KEY, Server, sse_events, start_server
from tools.structure import OpenFile

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
SEEDS = range(6)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                            "parameters": {"type": "object", "additionalProperties": False,
                                                           "required": ["city", "celsius"],
                                                           "properties": {"city": {"enum": ["Oslo", "Paris"]},
                                                                          "celsius": {"type": "boolean"}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "additionalProperties": False, "required": ["zone"],
    "properties": {"zone": {"enum": ["UTC", "CET"]}}}}}
COLOUR = {"type": "object", "additionalProperties": False, "required": ["colour", "count"],
          "properties": {"colour": {"enum": ["red", "green", "blue"]},
                         "count": {"type": "integer", "minimum": 0, "maximum": 99}}}


@pytest.fixture(scope="module")
def wide_server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server's setup with room for the tools' descriptions in the prompt."""
    srv = start_server(["--model", str(tiny_llama_dir), *BASE_ARGS, "--ctx", "512"],
                       tmp_path_factory.mktemp("serve") / "tools.log", api_key=API_KEY)
    yield srv
    srv.stop()


def chat(prompt: str = "Answer.", **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": 64, **fields}


def answer(server: Server, body: dict[str, Any], path: str = CHAT) -> dict[str, Any]:
    resp = server.post(path, body)
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]


def refused(server: Server, body: dict[str, Any], path: str = CHAT) -> dict[str, Any]:
    resp = server.post(path, body)
    assert resp.status_code == 400, resp.text
    return resp.json()["error"]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_lark_grammar_holds_whatever_the_model_would_write(server: Server, seed: int) -> None:
    lark = '%llguidance {}\nstart: ANSWER "." \nANSWER: "yes" | "no" | "maybe"\n'
    choice = answer(server, chat(grammar=lark, temperature=1.5, seed=seed))
    assert choice["message"]["content"] in ("yes.", "no.", "maybe.")
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_gbnf_grammar_holds_on_text_completions(server: Server, seed: int) -> None:
    gbnf = 'root ::= digit digit digit "!"\ndigit ::= [0-9]\n'
    choice = answer(server, {"prompt": "Count:", "grammar": gbnf, "temperature": 1.0, "seed": seed,
                             "max_tokens": 32}, "/v1/completions")
    assert re.fullmatch(r"\d{3}!", choice["text"]), choice["text"]
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_json_schema_answer_always_parses_and_matches(server: Server, seed: int) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "colour", "schema": COLOUR}}
    choice = answer(server, chat(response_format=fmt, temperature=1.0, seed=seed))
    value = json.loads(choice["message"]["content"])
    assert set(value) == {"colour", "count"} and value["colour"] in ("red", "green", "blue")
    assert 0 <= value["count"] <= 99 and choice["finish_reason"] == "stop"


def test_json_object_is_a_json_object_prefix_or_whole(server: Server) -> None:
    for seed in SEEDS:
        choice = answer(server, chat(response_format={"type": "json_object"}, temperature=0.7, seed=seed))
        text = choice["message"]["content"]
        assert text.startswith("{")
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(text), dict)
        else:  # cut by max_tokens: still nothing but JSON so far
            assert choice["finish_reason"] == "length"
            with pytest.raises(json.JSONDecodeError, match=r"Unterminated|Expecting"):
                json.loads(text)


def test_cbs_edit_grammar_compiles_and_constrains(server: Server, tiny_llama_dir: Path) -> None:
    import llguidance.hf
    from transformers import AutoTokenizer

    files = [OpenFile.from_bytes("geo.py", b"import os\ndef area(r):\n    return 3.14 * r * r\n")]
    grammar = edit_grammar(files)
    tok = llguidance.hf.from_tokenizer(AutoTokenizer.from_pretrained(str(tiny_llama_dir)))  # the served one's
    for seed in SEEDS:
        text = answer(server, chat("Replace 3.14 with math.pi.", grammar=grammar, temperature=1.0,
                                   seed=seed))["message"]["content"]
        matcher = llguidance.LLMatcher(tok, grammar, log_level=0)  # the answer so far is the grammar's
        assert matcher.consume_tokens(tok.tokenize_str(text)), matcher.get_error()


def test_required_tool_choice_answers_with_valid_calls(wide_server: Server) -> None:
    for seed in SEEDS:
        choice = answer(wide_server, chat("Weather in Oslo?", tools=[WEATHER, TIME], tool_choice="required",
                                     parallel_tool_calls=False, temperature=1.0, seed=seed))
        assert choice["finish_reason"] == "tool_calls"
        (call,) = choice["message"]["tool_calls"]
        assert call["type"] == "function" and call["id"].startswith("call_")
        args = json.loads(call["function"]["arguments"])
        if call["function"]["name"] == "get_weather":
            assert args["city"] in ("Oslo", "Paris") and isinstance(args["celsius"], bool)
        else:
            assert call["function"]["name"] == "get_time" and args["zone"] in ("UTC", "CET")


def test_a_named_tool_choice_calls_that_function(wide_server: Server) -> None:
    for seed in SEEDS:
        choice = answer(wide_server, chat("Weather?", tools=[WEATHER, TIME], temperature=1.0, seed=seed,
                                     tool_choice={"type": "function", "function": {"name": "get_time"}}))
        (call,) = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "get_time"
        assert json.loads(call["function"]["arguments"])["zone"] in ("UTC", "CET")
        assert choice["message"]["content"] is None and choice["finish_reason"] == "tool_calls"


def test_auto_tool_choice_is_prose_or_valid_calls(wide_server: Server) -> None:
    for seed in SEEDS:
        choice = answer(wide_server, chat("Weather?", tools=[WEATHER], temperature=1.0, seed=seed))
        message = choice["message"]
        if message.get("tool_calls"):
            assert choice["finish_reason"] == "tool_calls"
            for call in message["tool_calls"]:
                assert json.loads(call["function"]["arguments"])["city"] in ("Oslo", "Paris")
        else:
            assert "<tool_call>" not in message["content"]


def test_tool_calls_stream_as_deltas(wide_server: Server) -> None:
    body = chat("Weather?", tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, temperature=1.0,
                seed=3, stream=True)
    with wide_server.client() as c:
        events = sse_events(c.post(CHAT, json=body).text)
    whole = answer(wide_server, {**body, "stream": False})
    deltas = [e["choices"][0] for e in events[:-1] if e.get("choices")]
    calls = [d["delta"]["tool_calls"] for d in deltas if d["delta"].get("tool_calls")]
    assert len(calls) == 1 and calls[0][0]["index"] == 0
    streamed = calls[0][0]["function"]
    assert streamed == {k: v for k, v in whole["message"]["tool_calls"][0]["function"].items()}
    assert deltas[-1]["finish_reason"] == "tool_calls"
    assert not any(d["delta"].get("content") for d in deltas)


def test_constrained_and_plain_requests_share_a_batch(server: Server) -> None:
    plain = chat("Tell me a story.", temperature=0, max_tokens=24)
    alone = answer(server, plain)["message"]["content"]
    lark = '%llguidance {}\nstart: "ok " WORD\nWORD: /[a-z]{1,12}/\n'
    with ThreadPoolExecutor(2) as pool:
        shared = pool.submit(answer, server, plain)
        constrained = pool.submit(answer, server, chat("Say ok.", grammar=lark, temperature=0, max_tokens=24))
        assert shared.result()["message"]["content"] == alone
        assert re.fullmatch(r"ok [a-z]{1,12}", constrained.result()["message"]["content"])


@pytest.mark.parametrize(("field", "value"), [("logit_bias", {"42": 5}), ("functions", []), ("suffix", "x"),
                                              ("best_of", 2), ("frequency", 1)])
def test_a_field_the_server_cannot_honour_is_a_400_naming_it(server: Server, field: str, value: Any) -> None:
    error = refused(server, chat(**{field: value}))
    assert error["param"] == field and field in error["message"]


def test_unknown_fields_inside_objects_are_400s_too(server: Server) -> None:
    error = refused(server, {"messages": [{"role": "user", "content": "hi", "audio": {}}]})
    assert error["param"] == "messages[0].audio"


@pytest.mark.parametrize(("fields", "param"), [
    ({"grammar": "start: foo("}, "grammar"),
    ({"grammar": "root ::= (\"a\""}, "grammar"),
    ({"grammar": "start: \"a\"", "response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name"),
    ({"tools": [WEATHER], "grammar": "start: \"a\""}, "tools"),
])
def test_structure_that_cannot_be_had_is_a_400_naming_the_field(server: Server, fields: dict[str, Any],
                                                                 param: str) -> None:
    assert refused(server, chat(**fields))["param"] == param
