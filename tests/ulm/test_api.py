"""The Python API: `ulm.load` on a tiny HF checkpoint (and, slow, the embedded model): logits, generate,
stream, chat prompts with prefix reuse, modes, and the errors a user can cause.

Run: .venv/bin/python -m pytest tests/ulm/test_api.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ulm
from ulm.api import Model
from ulm.errors import ContextLengthError, EmptyPromptError
from ulm.reference import reference_greedy
from ulm.registry import ModelNotFoundError


@pytest.fixture(scope="module")
def model(tiny_llama_dir: Path) -> Model:
    return ulm.load(tiny_llama_dir)


def test_load_gives_config_tokenizer_and_exact_fp32_module(model: Model) -> None:
    assert model.config.n_layers == 2 and model.config.n_kv_heads == 2 and model.config.vocab_size == 49152
    assert model.dtype == torch.float32 and model.mode == "exact"
    assert model.tokenizer("hello")["input_ids"] == model.encode("hello")
    assert model.tokenizer.chat_template


def test_logits_are_fp32_per_position_and_rows_are_independent(model: Model) -> None:
    a, b = model.encode("The quick brown fox"), model.encode("Hello there world")
    n = min(len(a), len(b))
    both = model.logits(torch.tensor([a[:n], b[:n]]))
    assert both.shape == (2, n, 49152) and both.dtype == torch.float32
    alone = model.logits(torch.tensor([b[:n]]))
    torch.testing.assert_close(both[1:], alone, rtol=1e-4, atol=1e-4)
    assert model.logits([a[:n]]).shape == (1, n, 49152)


def test_greedy_generate_equals_the_reference_loop(model: Model) -> None:
    ids = model.encode("Once upon a time")
    out = model.generate("Once upon a time", temperature=0, max_tokens=12, stop_token_ids=[])
    assert out.token_ids == reference_greedy(model.module, ids, 12)
    assert out.usage.prompt_tokens == len(ids) and out.finish_reason == "length"


def test_stream_concatenates_to_the_generated_text(model: Model) -> None:
    options = dict(temperature=0.9, top_p=1.0, seed=4, max_tokens=20, stop_token_ids=[])
    done = model.generate("Tell me a story", **options)
    events = list(model.stream("Tell me a story", **options))
    assert "".join(e.text for e in events) == done.text
    last = events[-1]
    assert last.finish_reason == done.finish_reason and last.usage is not None
    assert last.usage.completion_tokens == done.usage.completion_tokens
    assert last.usage.cached_tokens == done.usage.prompt_tokens - 1  # the same prompt again: all but its last token


def test_messages_use_the_chat_template_and_a_follow_up_reuses_the_cache(model: Model) -> None:
    messages = [{"role": "user", "content": "Hi there"}]
    first = model.generate(messages, temperature=0, max_tokens=8)
    prompt = model.encode(messages)
    assert first.usage.prompt_tokens == len(prompt)
    assert model.tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    follow = [*messages, {"role": "assistant", "content": first.text}, {"role": "user", "content": "More"}]
    second = model.generate(follow, temperature=0, max_tokens=8)
    assert second.usage.cached_tokens >= len(prompt)
    assert second.usage.prefilled_tokens == second.usage.prompt_tokens - second.usage.cached_tokens
    assert model.generate("x", chat=True, temperature=0, max_tokens=2).usage.prompt_tokens == \
        len(model.encode([{"role": "user", "content": "x"}]))


def test_generate_batch_equals_generate_one_by_one(model: Model) -> None:
    prompts = ["Once upon a time", "The weather today is quite", "Hi"]
    for options in (dict(temperature=0), dict(temperature=1.0, top_p=1.0, seed=7)):
        batch = model.generate_batch(prompts, max_tokens=7, stop_token_ids=[], **options)
        alone = [model.generate(p, max_tokens=7, stop_token_ids=[], **options) for p in prompts]
        assert [c.token_ids for c in batch] == [c.token_ids for c in alone]
        assert [c.text for c in batch] == [c.text for c in alone]


def test_a_single_stop_string_is_accepted(model: Model) -> None:
    free = model.generate("Numbers:", temperature=0.8, top_p=1.0, seed=2, max_tokens=16, stop_token_ids=[])
    stop = free.text[len(free.text) // 2:][:2]
    cut = model.generate("Numbers:", temperature=0.8, top_p=1.0, seed=2, max_tokens=16, stop=stop,
                         stop_token_ids=[])
    assert cut.text == free.text[: free.text.find(stop)] and cut.finish_reason == "stop"


def test_user_errors_are_ulm_errors_with_one_line(model: Model) -> None:
    with pytest.raises(EmptyPromptError):
        model.generate("")
    with pytest.raises(EmptyPromptError):
        model.generate([])
    with pytest.raises(ContextLengthError, match="512"):
        model.generate([5] * 600)
    with pytest.raises(ValueError, match="temperature"):
        model.generate("hi", temperature=-1)
    with pytest.raises(ModelNotFoundError):
        ulm.load("no-such-model")
    with pytest.raises(ValueError, match="mode"):
        ulm.load(None, mode="turbo")


def test_fast_mode_runs_in_bf16_and_still_returns_fp32_logits(tiny_llama_dir: Path) -> None:
    fast = ulm.load(tiny_llama_dir, mode="fast")
    assert fast.mode == "fast"
    ids = fast.encode("Hello world")
    assert fast.logits([ids]).dtype == torch.float32
    assert len(fast.generate("Hello world", temperature=0, max_tokens=5, stop_token_ids=[]).token_ids) == 5


@pytest.mark.slow
def test_embedded_model_answers_a_chat_question() -> None:
    model = ulm.load()
    assert model.config.n_layers == 30 and model.source.kind == "gguf"
    out = model.generate([{"role": "user", "content": "What is the capital of France?"}], temperature=0,
                         max_tokens=12)
    assert "Paris" in out.text and out.finish_reason == "stop"
