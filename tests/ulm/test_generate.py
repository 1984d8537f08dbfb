"""The generation loop on a seeded random tiny model with SmolLM2's real tokenizer: cached == naive greedy,
batched == one-by-one, seeds, max tokens, stop strings and ids, prefix reuse, context limits.

Run: .venv/bin/python -m pytest tests/ulm/test_generate.py -q
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ulm import generate as generate_module
from ulm.config import preset
from ulm.errors import ContextLengthError, EmptyPromptError
from ulm.generate import Generator, Request, reference_greedy
from ulm.model import Transformer, build_model, canonical_shapes
from ulm.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)
PROMPTS = ["The capital of France is", "Once upon a time, in a land far away, there lived",
           "def fib(n):"]


@pytest.fixture(scope="module")
def model() -> Transformer:
    config = preset("tiny").with_(eos_token_ids=(2,), max_seq_len=128)
    gen = torch.Generator().manual_seed(0)
    state = {name: (torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) * 0.08)
             for name, shape in canonical_shapes(config).items()}
    state["embed.weight"] *= 6  # (tied head) logits with a std of ~4: peaked like a trained model's
    return build_model(config, state)


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))


def _ids(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _gen(model: Transformer, tok: Any, max_batch: int = 1) -> Generator:
    return Generator(model, tok, max_batch=max_batch)


def test_cached_greedy_equals_the_naive_uncached_loop(model: Transformer, tok: Any) -> None:
    ids = _ids(tok, PROMPTS[1])
    expected = reference_greedy(model, ids, 24)
    out = _gen(model, tok).generate([Request(ids, GREEDY, max_tokens=24, stop_token_ids=[])])[0]
    assert out.token_ids == expected
    assert out.finish_reason == "length" and out.usage.completion_tokens == 24
    assert out.text == tok.decode(expected, skip_special_tokens=True)


def test_batched_generation_equals_one_by_one(model: Transformer, tok: Any) -> None:
    requests = [Request(_ids(tok, PROMPTS[0]), GREEDY, max_tokens=12, stop_token_ids=[]),
                Request(_ids(tok, PROMPTS[1]), SamplingParams(temperature=0.9, top_p=0.95, seed=3), max_tokens=16,
                        stop_token_ids=[]),
                Request(_ids(tok, PROMPTS[2]), SamplingParams(temperature=1.2, top_k=20, seed=4), max_tokens=9,
                        stop_token_ids=[])]
    alone = [_gen(model, tok).generate([r])[0] for r in requests]
    batched = _gen(model, tok, max_batch=3).generate(requests)
    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [len(c.token_ids) for c in batched] == [12, 16, 9]


def test_a_fixed_seed_reproduces_and_another_seed_differs(model: Transformer, tok: Any) -> None:
    ids = _ids(tok, PROMPTS[0])

    def run(seed: int) -> list[int]:
        req = Request(ids, SamplingParams(temperature=1.0, seed=seed), max_tokens=20, stop_token_ids=[])
        return _gen(model, tok).generate([req])[0].token_ids

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_temperature_zero_is_deterministic_across_calls(model: Transformer, tok: Any) -> None:
    gen = _gen(model, tok)
    req = Request(_ids(tok, PROMPTS[2]), GREEDY, max_tokens=10, stop_token_ids=[])
    first = gen.generate([req])[0]
    assert gen.generate([req])[0].token_ids == first.token_ids
    assert _gen(model, tok).generate([req])[0].token_ids == first.token_ids


def test_max_tokens_is_respected(model: Transformer, tok: Any) -> None:
    for n in (1, 5):
        out = _gen(model, tok).generate([Request(_ids(tok, PROMPTS[0]), GREEDY, max_tokens=n, stop_token_ids=[])])[0]
        assert len(out.token_ids) == n and out.finish_reason == "length"


def test_stop_token_ends_the_text_without_being_emitted(model: Transformer, tok: Any) -> None:
    ids = _ids(tok, PROMPTS[1])
    free = reference_greedy(model, ids, 8)
    stop_id = free[4]
    cut = free.index(stop_id)
    out = _gen(model, tok).generate([Request(ids, GREEDY, max_tokens=8, stop_token_ids=[stop_id])])[0]
    assert out.finish_reason == "stop"
    assert out.token_ids == free[:cut]
    assert out.usage.completion_tokens == cut + 1


def test_stop_string_across_token_boundaries_is_cut_and_never_streamed(model: Transformer, tok: Any) -> None:
    ids = _ids(tok, PROMPTS[0])
    sampling = SamplingParams(temperature=1.0, seed=5)
    free = _gen(model, tok).generate([Request(ids, sampling, max_tokens=20, stop_token_ids=[])])[0].token_ids
    pieces = [tok.decode([t]) for t in free]
    k = next(i for i in range(2, 19) if len(pieces[i].strip()) >= 2 and len(pieces[i + 1].strip()) >= 2)
    stop = pieces[k][-2:] + pieces[k + 1][:2]  # straddles tokens k and k+1
    full = tok.decode(free)
    expected = full[: full.find(stop)]
    events = list(_gen(model, tok).stream([Request(ids, sampling, max_tokens=20, stop=[stop], stop_token_ids=[])]))
    assert "".join(e.text for e in events) == expected
    assert events[-1].finish_reason == "stop"
    streamed = ""
    for e in events:
        streamed += e.text
        assert stop not in streamed


def test_prefix_reuse_prefills_only_the_new_tokens_and_gives_the_same_output(model: Transformer, tok: Any) -> None:
    prefilled: list[int] = []
    gen = _gen(model, tok)
    first_ids = _ids(tok, PROMPTS[1])
    first = gen.generate([Request(first_ids, GREEDY, max_tokens=6, stop_token_ids=[])])[0]
    follow_ids = first_ids + first.token_ids + _ids(tok, " and then")
    hook = model.register_forward_pre_hook(lambda _m, args, kwargs: prefilled.append(args[0].shape[1]),
                                           with_kwargs=True)
    try:
        reused = gen.generate([Request(follow_ids, GREEDY, max_tokens=6, stop_token_ids=[])])[0]
    finally:
        hook.remove()
    # the cache held the first prompt and all generated tokens but the last (never fed back)
    cached = len(first_ids) + len(first.token_ids) - 1
    assert reused.usage.cached_tokens == cached
    assert prefilled[0] == len(follow_ids) - cached  # the prefill forward saw only the new tokens
    assert reused.usage.prefilled_tokens == prefilled[0]
    fresh = _gen(model, tok).generate([Request(follow_ids, GREEDY, max_tokens=6, stop_token_ids=[])])[0]
    assert reused.token_ids == fresh.token_ids and fresh.usage.cached_tokens == 0


def test_divergent_prompt_truncates_to_the_common_prefix(model: Transformer, tok: Any) -> None:
    gen = _gen(model, tok)
    a = _ids(tok, "Once upon a time, in a land far away")
    b = _ids(tok, "Once upon a time, in a galaxy")
    common = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    gen.generate([Request(a, GREEDY, max_tokens=4, stop_token_ids=[])])
    out = gen.generate([Request(b, GREEDY, max_tokens=8, stop_token_ids=[])])[0]
    assert out.usage.cached_tokens == common
    assert out.token_ids == reference_greedy(model, b, 8)
    same = gen.generate([Request(b, GREEDY, max_tokens=8, stop_token_ids=[])])[0]  # the identical prompt again
    assert same.usage.cached_tokens == len(b) - 1 and same.token_ids == out.token_ids


def test_the_cache_grows_with_the_sequence_and_keeps_what_it_holds(model: Transformer, tok: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate_module, "MIN_CACHE_LEN", 8)
    gen = _gen(model, tok, max_batch=2)
    short, long = _ids(tok, PROMPTS[0]), _ids(tok, PROMPTS[1])
    outs = gen.generate([Request(short, GREEDY, max_tokens=30, stop_token_ids=[]),
                         Request(long, GREEDY, max_tokens=20, stop_token_ids=[])])
    assert gen.cache.max_len == 64  # 8 → 16 (prompt) → 32 → 64, never past what the rows needed
    assert outs[0].token_ids == reference_greedy(model, short, 30)
    assert outs[1].token_ids == reference_greedy(model, long, 20)


def test_reset_forgets_the_cached_prefix(model: Transformer, tok: Any) -> None:
    gen = _gen(model, tok)
    req = Request(_ids(tok, PROMPTS[1]), GREEDY, max_tokens=4, stop_token_ids=[])
    first = gen.generate([req])[0]
    gen.reset()
    again = gen.generate([req])[0]
    assert again.usage.cached_tokens == 0 and again.token_ids == first.token_ids


def test_streamed_text_equals_the_decoded_tokens(model: Transformer, tok: Any) -> None:
    req = Request(_ids(tok, PROMPTS[0]), SamplingParams(temperature=1.5, seed=9), max_tokens=30, stop_token_ids=[])
    events = list(_gen(model, tok).stream([req]))
    ids = [e.token_id for e in events if e.token_id is not None]
    assert "".join(e.text for e in events) == tok.decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in e.text for e in events[:-1]) or "\ufffd" in tok.decode(ids)
    last = events[-1]
    assert last.usage is not None and last.timings is not None and last.timings.prefill_ms > 0


def test_empty_and_too_long_prompts_are_refused_before_any_work(model: Transformer, tok: Any) -> None:
    gen = _gen(model, tok)
    with pytest.raises(EmptyPromptError):
        gen.stream([Request([], GREEDY)])
    with pytest.raises(ContextLengthError) as err:
        gen.stream([Request([5] * 128, GREEDY)])
    assert err.value.n_prompt_tokens == 128 and err.value.n_ctx == 128
    with pytest.raises(ValueError, match="vocabulary"):
        gen.stream([Request([10**6], GREEDY)])


def test_a_generation_that_fills_the_context_ends_with_length(model: Transformer, tok: Any) -> None:
    out = _gen(model, tok).generate([Request([5] * 120, GREEDY, max_tokens=50, stop_token_ids=[])])[0]
    assert out.finish_reason == "length"
    assert len(out.token_ids) == 128 - 120 + 1  # positions 120..127 fed, one more token sampled
