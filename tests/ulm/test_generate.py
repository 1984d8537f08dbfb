"""Generation through `ulm.Model` (the engine run in process) on a seeded random tiny model with SmolLM2's
real tokenizer: cached == naive greedy, batched == one-by-one, seeds, max tokens, stop strings and ids,
prefix reuse, a cache that grows with use, context limits.

Run: .venv/bin/python -m pytest tests/ulm/test_generate.py -q
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ulm.api import Model
from ulm.config import preset
from ulm.engine import backend as backend_module
from ulm.engine.backend import UlmBackend
from ulm.engine.types import Request, collect
from ulm.engine.worker import Engine
from ulm.errors import ContextLengthError, EmptyPromptError
from ulm.model import Transformer, build_model, canonical_shapes
from ulm.reference import reference_greedy
from ulm.registry import ModelSource
from ulm.sampling import SamplingParams

GREEDY = dict(temperature=0, stop_token_ids=[])
PROMPTS = ["The capital of France is", "Once upon a time, in a land far away, there lived",
           "def fib(n):"]


@pytest.fixture(scope="module")
def net() -> Transformer:
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


def _model(net: Transformer, tok: Any) -> Model:
    """A fresh Model (its own engine and KV cache) on the tiny network."""
    return Model(net, tok, ModelSource("tiny", "hf", Path("tiny")), "exact", 0.0)


def _ids(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_cached_greedy_equals_the_naive_uncached_loop(net: Transformer, tok: Any) -> None:
    ids = _ids(tok, PROMPTS[1])
    expected = reference_greedy(net, ids, 24)
    out = _model(net, tok).generate(ids, max_tokens=24, **GREEDY)
    assert out.token_ids == expected
    assert out.finish_reason == "length" and out.usage.completion_tokens == 24
    assert out.text == tok.decode(expected, skip_special_tokens=True)


def test_batched_generation_equals_one_by_one(net: Transformer, tok: Any) -> None:
    prompts = [_ids(tok, p) for p in PROMPTS]
    for options in (GREEDY, dict(temperature=0.9, top_p=0.95, seed=3, stop_token_ids=[])):
        alone = [_model(net, tok).generate(p, max_tokens=9, **options) for p in prompts]
        batched = _model(net, tok).generate_batch(prompts, max_tokens=9, **options)
        assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
        assert [c.text for c in batched] == [c.text for c in alone]


def test_each_request_of_a_batch_keeps_its_own_sampling_and_limits(net: Transformer, tok: Any) -> None:
    requests = [Request(_ids(tok, PROMPTS[0]), 12, SamplingParams(temperature=0), stop_token_ids=frozenset()),
                Request(_ids(tok, PROMPTS[1]), 16, SamplingParams(temperature=0.9, top_p=0.95, seed=3),
                        stop_token_ids=frozenset()),
                Request(_ids(tok, PROMPTS[2]), 9, SamplingParams(temperature=1.2, top_k=20, seed=4),
                        stop_token_ids=frozenset())]

    def run(engine: Engine, reqs: list[Request]) -> list[list[int]]:
        events: list[list[Any]] = [[] for _ in reqs]
        for i, ev in engine.generate(reqs):
            events[i].append(ev)
        return [collect(evs).token_ids for evs in events]

    alone = [run(Engine(UlmBackend(net, tok, "tiny"), parallel=1, n_ctx=128), [r])[0] for r in requests]
    batched = run(Engine(UlmBackend(net, tok, "tiny"), parallel=3, n_ctx=128), requests)
    assert batched == alone
    assert [len(t) for t in batched] == [12, 16, 9]


def test_a_fixed_seed_reproduces_and_another_seed_differs(net: Transformer, tok: Any) -> None:
    model = _model(net, tok)
    ids = _ids(tok, PROMPTS[0])

    def run(seed: int) -> list[int]:
        return model.generate(ids, temperature=1.0, seed=seed, max_tokens=20, stop_token_ids=[]).token_ids

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_temperature_zero_is_deterministic_across_calls(net: Transformer, tok: Any) -> None:
    model = _model(net, tok)
    ids = _ids(tok, PROMPTS[2])
    first = model.generate(ids, max_tokens=10, **GREEDY)
    assert model.generate(ids, max_tokens=10, **GREEDY).token_ids == first.token_ids
    assert _model(net, tok).generate(ids, max_tokens=10, **GREEDY).token_ids == first.token_ids


def test_max_tokens_is_respected(net: Transformer, tok: Any) -> None:
    model = _model(net, tok)
    for n in (1, 5):
        out = model.generate(_ids(tok, PROMPTS[0]), max_tokens=n, **GREEDY)
        assert len(out.token_ids) == n and out.finish_reason == "length"


def test_stop_token_ends_the_text_without_being_emitted(net: Transformer, tok: Any) -> None:
    ids = _ids(tok, PROMPTS[1])
    free = reference_greedy(net, ids, 8)
    stop_id = free[4]
    cut = free.index(stop_id)
    out = _model(net, tok).generate(ids, temperature=0, max_tokens=8, stop_token_ids=[stop_id])
    assert out.finish_reason == "stop"
    assert out.token_ids == free[:cut]
    assert out.usage.completion_tokens == cut + 1
    at_budget = _model(net, tok).generate(ids, temperature=0, max_tokens=cut + 1, stop_token_ids=[stop_id])
    assert at_budget.finish_reason == "stop"  # a stop token as the last allowed token still reads as a stop


def test_stop_string_across_token_boundaries_is_cut_and_never_streamed(net: Transformer, tok: Any) -> None:
    model = _model(net, tok)
    ids = _ids(tok, PROMPTS[0])
    options = dict(temperature=1.0, top_p=1.0, seed=5, max_tokens=20, stop_token_ids=[])
    free = model.generate(ids, **options).token_ids
    pieces = [tok.decode([t]) for t in free]
    k = next(i for i in range(2, 19) if len(pieces[i].strip()) >= 2 and len(pieces[i + 1].strip()) >= 2)
    stop = pieces[k][-2:] + pieces[k + 1][:2]  # straddles tokens k and k+1
    full = tok.decode(free)
    expected = full[: full.find(stop)]
    events = list(model.stream(ids, stop=[stop], **options))
    assert "".join(e.text for e in events) == expected
    assert events[-1].finish_reason == "stop"
    streamed = ""
    for e in events:
        streamed += e.text
        assert stop not in streamed


def test_prefix_reuse_prefills_only_the_new_tokens_and_gives_the_same_output(net: Transformer, tok: Any) -> None:
    prefilled: list[int] = []
    model = _model(net, tok)
    first_ids = _ids(tok, PROMPTS[1])
    first = model.generate(first_ids, max_tokens=6, **GREEDY)
    follow_ids = first_ids + first.token_ids + _ids(tok, " and then")
    hook = net.register_forward_pre_hook(lambda _m, args, kwargs: prefilled.append(args[0].shape[1]),
                                         with_kwargs=True)
    try:
        reused = model.generate(follow_ids, max_tokens=6, **GREEDY)
    finally:
        hook.remove()
    # the cache held the first prompt and all generated tokens but the last (never fed back)
    cached = len(first_ids) + len(first.token_ids) - 1
    assert reused.usage.cached_tokens == cached
    assert prefilled[0] == len(follow_ids) - cached  # the prefill forward saw only the new tokens
    assert reused.usage.prefilled_tokens == prefilled[0]
    fresh = _model(net, tok).generate(follow_ids, max_tokens=6, **GREEDY)
    assert reused.token_ids == fresh.token_ids and fresh.usage.cached_tokens == 0


def test_divergent_prompt_truncates_to_the_common_prefix(net: Transformer, tok: Any) -> None:
    model = _model(net, tok)
    a = _ids(tok, "Once upon a time, in a land far away")
    b = _ids(tok, "Once upon a time, in a galaxy")
    common = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    model.generate(a, max_tokens=4, **GREEDY)
    out = model.generate(b, max_tokens=8, **GREEDY)
    assert out.usage.cached_tokens == common
    assert out.token_ids == reference_greedy(net, b, 8)
    same = model.generate(b, max_tokens=8, **GREEDY)  # the identical prompt again
    assert same.usage.cached_tokens == len(b) - 1 and same.token_ids == out.token_ids


def test_the_cache_grows_with_the_sequence_and_keeps_what_it_holds(net: Transformer, tok: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "MIN_CACHE_LEN", 8)
    model = _model(net, tok)
    short = _ids(tok, PROMPTS[0])
    out = model.generate(short, max_tokens=30, **GREEDY)
    assert model.backend.cache is not None
    assert model.backend.cache.max_len == 64  # 8 → 16 → 32 → 64, never past what the row needed
    assert out.token_ids == reference_greedy(net, short, 30)
    follow = short + out.token_ids + _ids(tok, " and so on")  # reuses what the grown cache kept
    again = model.generate(follow, max_tokens=4, **GREEDY)
    assert again.usage.cached_tokens == len(short) + 29
    assert again.token_ids == reference_greedy(net, follow, 4)


def test_reset_forgets_the_cached_prefix(net: Transformer, tok: Any) -> None:
    model = _model(net, tok)
    ids = _ids(tok, PROMPTS[1])
    first = model.generate(ids, max_tokens=4, **GREEDY)
    model.reset()
    again = model.generate(ids, max_tokens=4, **GREEDY)
    assert again.usage.cached_tokens == 0 and again.token_ids == first.token_ids


def test_streamed_text_equals_the_decoded_tokens(net: Transformer, tok: Any) -> None:
    events = list(_model(net, tok).stream(_ids(tok, PROMPTS[0]), temperature=1.5, top_p=1.0, seed=9,
                                          max_tokens=30, stop_token_ids=[]))
    ids = [e.token_id for e in events if e.token_id is not None]
    assert "".join(e.text for e in events) == tok.decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in e.text for e in events[:-1]) or "\ufffd" in tok.decode(ids)
    last = events[-1]
    assert last.usage is not None and last.timings is not None and last.timings.prefill_ms > 0
    assert last.timings.decode_steps == 29 and last.timings.decode_tokens_per_s > 0


def test_abandoning_a_stream_frees_the_slot_and_keeps_its_prefix(net: Transformer, tok: Any) -> None:
    model = _model(net, tok)
    ids = _ids(tok, PROMPTS[1])
    stream = model.stream(ids, max_tokens=20, **GREEDY)
    taken = [next(stream).token_id for _ in range(5)]
    stream.close()  # the consumer stops early (a Ctrl-C, a break)
    out = model.generate(ids + taken, max_tokens=3, **GREEDY)
    assert out.usage.cached_tokens == len(ids) + 4  # all fed tokens: the prompt and the first four generated
    assert out.token_ids == reference_greedy(net, ids + taken, 3)


def test_empty_and_too_long_prompts_are_refused_before_any_work(net: Transformer, tok: Any) -> None:
    model = _model(net, tok)
    with pytest.raises(EmptyPromptError):
        model.stream([], **GREEDY)
    with pytest.raises(ContextLengthError) as err:
        model.stream([5] * 128, **GREEDY)
    assert err.value.n_prompt_tokens == 128 and err.value.n_ctx == 128
    with pytest.raises(ValueError, match="vocabulary"):
        model.stream([10**6], **GREEDY)
    with pytest.raises(ValueError, match="max_tokens"):
        model.stream([5], max_tokens=0)


def test_a_generation_that_fills_the_context_ends_with_length(net: Transformer, tok: Any) -> None:
    out = _model(net, tok).generate([5] * 120, max_tokens=50, **GREEDY)
    assert out.finish_reason == "length"
    assert len(out.token_ids) == 128 - 120  # prompt and completion together fit the context
