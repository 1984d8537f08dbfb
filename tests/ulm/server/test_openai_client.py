"""The official `openai` client against a real `ulm serve`: chat, streaming, stop, usage, models, and errors
surfacing as the SDK's exception classes.

Run: .venv/bin/python -m pytest tests/ulm/server/test_openai_client.py -q
"""

from __future__ import annotations

import openai
import pytest

from tests.ulm.server.harness import API_KEY, Server

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=30)


def test_models_lists_the_served_model_with_its_context(client: openai.OpenAI, tiny_llama_dir) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [tiny_llama_dir.name]
    assert models[0].owned_by == "ulm"
    assert models[0].model_extra["context_length"] == 256


def test_chat_returns_text_and_usage(client: openai.OpenAI, tiny_llama_dir) -> None:
    reply = client.chat.completions.create(model=tiny_llama_dir.name, messages=HELLO, max_tokens=8, temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.prompt_tokens_details.cached_tokens >= 0
    assert reply.model_extra["timings"]["predicted_n"] == reply.usage.completion_tokens


def test_streaming_matches_the_whole_reply(client: openai.OpenAI, tiny_llama_dir) -> None:
    kwargs = dict(model=tiny_llama_dir.name, messages=HELLO, max_tokens=12, temperature=0.8, seed=42)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 12


def test_stop_string_cuts_the_reply(client: openai.OpenAI, tiny_llama_dir) -> None:
    base = dict(model=tiny_llama_dir.name, messages=HELLO, max_tokens=24, temperature=0)
    text = client.chat.completions.create(**base).choices[0].message.content
    assert len(text) >= 6
    stop = text[3:6]
    reply = client.chat.completions.create(**base, stop=[stop])
    assert reply.choices[0].message.content == text[: text.index(stop)]
    assert reply.choices[0].finish_reason == "stop"


def test_text_completions_work(client: openai.OpenAI, tiny_llama_dir) -> None:
    reply = client.completions.create(model=tiny_llama_dir.name, prompt="Once upon a time", max_tokens=5,
                                      temperature=0)
    assert reply.choices[0].text and reply.usage.completion_tokens <= 5


def test_errors_surface_as_the_sdk_exception_classes(client: openai.OpenAI, server: Server, tiny_llama_dir) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert not_found.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=tiny_llama_dir.name, messages=HELLO, temperature=5)
    assert bad.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model=tiny_llama_dir.name,
                                       messages=[{"role": "user", "content": "word " * 400}])
    assert too_long.value.body["type"] == "exceed_context_size_error"
    wrong_key = openai.OpenAI(base_url=server.base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.chat.completions.create(model=tiny_llama_dir.name, messages=HELLO)
