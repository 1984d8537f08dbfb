"""Sampling: greedy, filters, penalties and seeded draws over a batch of rows with their own params. The tests
of `sample` and `BatchSampler` run both samplers: the native one (`ulm_sample.c`) and torch's.

Run: .venv/bin/python -m pytest tests/ulm/test_sampling.py -q
"""

from __future__ import annotations

import pytest
import torch

from ulm.kernels import native
from ulm.sampling import BatchParams, BatchSampler, SamplingParams, apply_penalties, draw, filter_logits, sample

V = 50


@pytest.fixture(params=["native", "torch"])
def sampler(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which sampler `sample` runs: the native one (the kernels must build here) or torch's."""
    if request.param == "native" and native.library() is None:
        pytest.fail("the native kernels did not build on this machine (a C compiler is part of the set-up)")
    if request.param == "torch":
        monkeypatch.setattr(native, "library", lambda: None)
    return str(request.param)


def _drawn(logits: torch.Tensor, params: SamplingParams, draws: int = 300) -> set[int]:
    """The tokens `sample` draws from one row over many seeds."""
    return {int(sample(logits, _params(params), None, _gens(seed)).item()) for seed in range(draws)}


def _logits(b: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, V, generator=torch.Generator().manual_seed(seed)) * 3


def _params(*ps: SamplingParams) -> BatchParams:
    return BatchParams.stack(list(ps))


def _gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_temperature_zero_is_argmax_of_each_row(sampler: str) -> None:
    logits = _logits(4)
    out = sample(logits, _params(*[SamplingParams(temperature=0)] * 4), None, _gens(1, 2, 3, 4))
    assert out.tolist() == logits.argmax(-1).tolist()


def test_greedy_row_in_a_mixed_batch_stays_argmax(sampler: str) -> None:
    logits = _logits(2)
    out = sample(logits, _params(SamplingParams(temperature=0), SamplingParams(temperature=1.5)), None, _gens(0, 0))
    assert out[0].item() == logits[0].argmax().item()


def test_top_k_one_equals_greedy(sampler: str) -> None:
    logits = _logits(3)
    for seed in range(20):
        out = sample(logits, _params(*[SamplingParams(top_k=1)] * 3), None, _gens(seed, seed + 1, seed + 2))
        assert out.tolist() == logits.argmax(-1).tolist()


def test_top_k_keeps_exactly_k_tokens_per_row() -> None:
    logits = _logits(2)
    filtered = filter_logits(logits, _params(SamplingParams(top_k=5), SamplingParams(top_k=12)))
    assert torch.isfinite(filtered).sum(-1).tolist() == [5, 12]
    top5 = set(logits[0].topk(5).indices.tolist())
    assert set(torch.isfinite(filtered[0]).nonzero().flatten().tolist()) == top5


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, _params(SamplingParams(top_p=0.7)))).tolist()
    assert kept == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, _params(SamplingParams(top_p=0.45)))).tolist()
    assert kept == [[True, False, False, False]]
    kept = torch.isfinite(filter_logits(logits, _params(SamplingParams(top_p=0.01)))).tolist()
    assert kept == [[True, False, False, False]]  # the most likely token always survives


def test_min_p_drops_tokens_below_the_scaled_max() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, _params(SamplingParams(min_p=0.2)))).tolist()
    assert kept == [[True, True, True, False]]


def test_rows_without_filters_keep_their_full_distribution_next_to_filtered_rows() -> None:
    logits = _logits(2)
    filtered = filter_logits(logits, _params(SamplingParams(), SamplingParams(top_p=0.3, top_k=3)))
    assert torch.isfinite(filtered[0]).all()


def test_sample_draws_only_from_the_filtered_set(sampler: str) -> None:
    logits = _logits(1, seed=3)
    assert _drawn(logits, SamplingParams(top_k=5)) == set(logits[0].topk(5).indices.tolist())
    probs = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert _drawn(probs, SamplingParams(top_p=0.7)) == {0, 1}
    assert _drawn(probs, SamplingParams(top_p=0.45)) == {0}
    assert _drawn(probs, SamplingParams(min_p=0.2)) == {0, 1, 2}
    assert _drawn(probs, SamplingParams(top_k=3, top_p=0.9, min_p=0.35)) == {0, 1}


def test_a_large_vocabulary_filters_and_draws_alike_on_both_samplers(sampler: str) -> None:
    """49k tokens (the embedded model's vocabulary): the top-p cut past the first 64 candidates, a flat tail."""
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(1, 49152, generator=g)  # flat: top-p 0.5 keeps thousands of tokens
    params = SamplingParams(temperature=0.7, top_p=0.5)
    kept = torch.isfinite(filter_logits(logits, _params(params)))[0]
    drawn = _drawn(logits, params, draws=200)
    assert all(kept[t] for t in drawn) and len(drawn) > 150  # from the kept set, and spread over it


def test_penalties_steer_the_draw_on_both_samplers(sampler: str) -> None:
    logits = torch.tensor([[3.0, 2.9, -5.0, -5.0]])
    counts = torch.tensor([[4, 0, 0, 0]], dtype=torch.int32)
    for params in (SamplingParams(temperature=0, repetition_penalty=2.0),
                   SamplingParams(temperature=0, frequency_penalty=0.1),
                   SamplingParams(temperature=0, presence_penalty=0.5)):
        assert sample(logits, _params(params), counts, _gens(0)).item() == 1


def test_repetition_penalty_has_hf_semantics() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    counts = torch.tensor([[1, 1, 0, 3]], dtype=torch.int32)
    out = apply_penalties(logits, counts, _params(SamplingParams(repetition_penalty=2.0)))
    assert out.tolist() == [[1.0, -4.0, 1.0, 0.25]]


def test_presence_and_frequency_penalties_have_openai_semantics() -> None:
    logits = torch.zeros(1, 4)
    counts = torch.tensor([[0, 1, 2, 5]], dtype=torch.int32)
    out = apply_penalties(logits, counts, _params(SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)))
    assert out.tolist() == [[0.0, -0.75, -1.0, -1.75]]


def test_seeded_draws_reproduce_and_follow_the_distribution(sampler: str) -> None:
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    params = _params(SamplingParams(temperature=1.0))
    gen_a, gen_b = _gens(7, 7)
    a = [sample(logits, params, None, [gen_a]).item() for _ in range(3000)]
    b = [sample(logits, params, None, [gen_b]).item() for _ in range(3000)]
    assert a == b
    freq = torch.bincount(torch.tensor(a), minlength=3).float() / len(a)
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.04)


def test_the_two_level_draw_follows_a_large_distribution_and_never_picks_a_filtered_token() -> None:
    g = torch.Generator().manual_seed(3)
    V = 1000  # not a multiple of the chunk: the padded tail is never drawn
    probs = torch.softmax(torch.randn(2, V, generator=g) * 2, dim=-1)
    probs[:, ::3] = 0  # filtered tokens
    probs /= probs.sum(dim=-1, keepdim=True)
    uniform = torch.rand(40000, dtype=torch.float64, generator=g)
    tokens = torch.cat([draw(probs[i % 2:i % 2 + 1], uniform[i:i + 1]) for i in range(0, 40000, 2)])
    freq = torch.bincount(tokens, minlength=V).double() / len(tokens)
    assert freq[::3].sum().item() == 0 and tokens.max().item() < V
    assert (freq - probs[0].double()).abs().sum().item() < 0.12  # total variation of 20000 draws
    edge = draw(probs, torch.tensor([0.0, 1 - 2.0 ** -52], dtype=torch.float64))  # the extreme quantiles
    assert probs[0, edge[0]] > 0 and probs[1, edge[1]] > 0
    assert edge[0].item() == int(probs[0].nonzero()[0]) and edge[1].item() == int(probs[1].nonzero()[-1])


def test_a_rows_draws_do_not_depend_on_its_batch_neighbours(sampler: str) -> None:
    logits = _logits(3)
    params = [SamplingParams(temperature=0.8, top_p=0.9, seed=5), SamplingParams(temperature=1.3, top_k=7),
              SamplingParams(temperature=0)]
    alone = BatchSampler(1, V)
    alone.set_row(0, params[0])
    together = BatchSampler(3, V)
    for row, p in enumerate(params):
        together.set_row(row, p)
    for _ in range(30):
        assert alone.sample(logits[:1], [0])[0] == together.sample(logits, [0, 1, 2])[0]


def test_batch_sampler_counts_generated_tokens_for_penalties(sampler: str) -> None:
    sampler = BatchSampler(2, V)
    sampler.set_row(1, SamplingParams(temperature=0, presence_penalty=2.0))
    logits = torch.zeros(1, V)
    logits[0, 3] = 1.0
    assert sampler.sample(logits, [1]) == [3]
    assert sampler.counts[1, 3].item() == 1 and sampler.counts[0].sum().item() == 0
    assert sampler.sample(logits, [1]) != [3]  # penalised away
    sampler.set_row(1, SamplingParams(temperature=0))
    assert sampler.counts[1].sum().item() == 0


def test_a_row_restarted_with_new_params_samples_with_them(sampler: str) -> None:
    batch = BatchSampler(2, V)
    logits = torch.zeros(2, V)
    logits[:, 3] = 1.0
    for row in (0, 1):
        batch.set_row(row, SamplingParams(temperature=0.5, top_k=1))
    assert batch.sample(logits, [0, 1]) == [3, 3]
    batch.set_row(1, SamplingParams(temperature=0.5, top_k=1, presence_penalty=2.0))
    assert batch.sample(logits, [0, 1]) == [3, 3]  # row 1 counts its 3 now
    kept, penalised = batch.sample(logits, [0, 1])
    assert kept == 3 and penalised != 3


@pytest.mark.parametrize("field,value", [("temperature", -1), ("top_p", 0), ("top_p", 1.5), ("top_k", -1),
                                         ("min_p", 2), ("repetition_penalty", 0), ("presence_penalty", 3)])
def test_out_of_range_params_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value}).validate()
