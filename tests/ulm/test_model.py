"""ulm.model: the cached paths equal the uncached reference; GQA/MQA equal MHA with repeated K/V heads.

Run: .venv/bin/python -m pytest tests/ulm/test_model.py -q   (random tiny models, CPU, a few seconds)
"""

from __future__ import annotations

import pytest
import torch

from ulm.config import ModelConfig
from ulm.errors import ContextLengthError, ModelLoadError
from ulm.kv_cache import KVCache
from ulm.model import Transformer, build_model, canonical_shapes, check_state_dict, to_canonical

ATOL = 1e-4  # fp32, different summation orders of the same math


def small(**changes: object) -> ModelConfig:
    base = dict(vocab_size=97, dim=48, n_layers=2, n_heads=6, n_kv_heads=2, hidden_dim=96, max_seq_len=128,
                rope_theta=10000.0)
    return ModelConfig(**{**base, **changes})  # type: ignore[arg-type]


def random_model(config: ModelConfig, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


def ids_of(n: int, seed: int = 1, vocab: int = 97, batch: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=[dict(), dict(n_kv_heads=6), dict(n_kv_heads=1), dict(qkv_bias=True, tie_embeddings=True),
                        dict(norm="layernorm", mlp="gelu")],
                ids=["gqa", "mha", "mqa", "bias-tied", "layernorm-gelu"])
def config(request: pytest.FixtureRequest) -> ModelConfig:
    return small(**request.param)


@torch.inference_mode()
def test_token_by_token_decode_equals_uncached_forward(config: ModelConfig) -> None:
    model, ids = random_model(config), ids_of(24)
    ref = model(ids)  # [1, 24, V]
    cache = KVCache(config, max_batch=1, max_len=32)
    steps = [model(ids[:, t:t + 1], cache=cache, start=torch.tensor([t])) for t in range(24)]
    torch.testing.assert_close(torch.cat(steps, dim=1), ref, atol=ATOL, rtol=0)


@torch.inference_mode()
def test_chunked_prefill_equals_uncached_forward(config: ModelConfig) -> None:
    model, ids = random_model(config), ids_of(30)
    ref = model(ids)
    cache = KVCache(config, max_batch=1, max_len=30)
    out, t = [], 0
    for chunk in (7, 1, 12, 10):
        out.append(model(ids[:, t:t + chunk], cache=cache, start=t))
        cache.advance(0, chunk)
        t += chunk
    torch.testing.assert_close(torch.cat(out, dim=1), ref, atol=ATOL, rtol=0)
    assert int(cache.lengths[0]) == 30


@torch.inference_mode()
def test_start_defaults_to_the_cache_lengths() -> None:
    config = small()
    model, ids = random_model(config), ids_of(10)
    cache = KVCache(config, 1, 16)
    model(ids[:, :6], cache=cache)
    cache.advance(0, 6)
    torch.testing.assert_close(model(ids[:, 6:], cache=cache), model(ids)[:, 6:], atol=ATOL, rtol=0)


@torch.inference_mode()
@pytest.mark.parametrize("rows", [[3, 0, 1], [1, 2, 3]], ids=["scattered-rows", "contiguous-rows"])
def test_rows_at_different_lengths_decode_together_as_each_alone(config: ModelConfig, rows: list[int]) -> None:
    # scattered rows are gathered from the cache; contiguous rows are read as a view with a per-row mask
    model = random_model(config)
    prompts = [ids_of(9, seed=2), ids_of(4, seed=3), ids_of(13, seed=4)]
    cache = KVCache(config, max_batch=4, max_len=24)
    for row, prompt in zip(rows, prompts, strict=True):
        model(prompt[:, :-1], cache=cache, start=0, rows=torch.tensor([row]))
        cache.advance(row, prompt.shape[1] - 1)
    for step in range(3):
        last = torch.cat([p[:, -1:] for p in prompts])  # [3, 1]
        together = model(last, cache=cache, start=cache.lengths[rows], rows=torch.tensor(rows))  # [3, 1, V]
        for b, prompt in enumerate(prompts):
            alone = model(prompt)[:, -1]  # the uncached reference over the whole sequence
            torch.testing.assert_close(together[b], alone, atol=ATOL, rtol=0, msg=f"step {step} row {b}")
        cache.advance(rows, 1)
        nxt = together[:, -1].argmax(-1, keepdim=True)  # [3, 1]
        prompts = [torch.cat([p, nxt[b:b + 1]], dim=1) for b, p in enumerate(prompts)]


@torch.inference_mode()
def test_batched_prefill_of_different_length_chunks_at_different_starts() -> None:
    config = small()
    model = random_model(config)
    a, b = ids_of(12, seed=5), ids_of(12, seed=6)
    cache = KVCache(config, 2, 16)
    model(a[:, :5], cache=cache, start=0, rows=torch.tensor([0]))
    model(b[:, :2], cache=cache, start=0, rows=torch.tensor([1]))
    chunk = torch.cat([a[:, 5:9], b[:, 2:6]])  # 4 tokens each, starting at 5 and 2
    out = model(chunk, cache=cache, start=torch.tensor([5, 2]))
    torch.testing.assert_close(out[0], model(a[:, :9])[0, 5:], atol=ATOL, rtol=0)
    torch.testing.assert_close(out[1], model(b[:, :6])[0, 2:], atol=ATOL, rtol=0)


@torch.inference_mode()
def test_last_only_returns_the_last_positions_logits(config: ModelConfig) -> None:
    model, ids = random_model(config), ids_of(11, batch=2)
    last = model(ids, last_only=True)
    assert last.shape == (2, 1, config.vocab_size)
    torch.testing.assert_close(last, model(ids)[:, -1:], atol=ATOL, rtol=0)


def expand_kv_heads(config: ModelConfig, state: dict[str, torch.Tensor]) -> tuple[ModelConfig, dict]:
    """The MHA model computing the same function: each KV head's rows repeated for its query heads."""
    assert config.head_dim is not None
    mha, rep, out = config.with_(n_kv_heads=config.n_heads), config.n_rep, dict(state)
    for name, t in state.items():
        if ".wk." in name or ".wv." in name:
            heads = t.view(config.n_kv_heads, config.head_dim, *t.shape[1:])  # [Hkv, hd, (D)]
            out[name] = heads.repeat_interleave(rep, dim=0).reshape(config.n_heads * config.head_dim, *t.shape[1:])
    return mha, out


@pytest.mark.parametrize("n_kv_heads", [3, 1], ids=["gqa", "mqa"])
@torch.inference_mode()
def test_grouped_kv_heads_equal_mha_with_repeated_heads(n_kv_heads: int) -> None:
    config = small(n_kv_heads=n_kv_heads, qkv_bias=True)
    grouped = random_model(config)
    mha_config, mha_state = expand_kv_heads(config, to_canonical(grouped))
    mha = build_model(mha_config, mha_state)
    ids = ids_of(16, batch=2)
    torch.testing.assert_close(grouped(ids), mha(ids), atol=ATOL, rtol=0)
    caches = [KVCache(c, 2, 16) for c in (config, mha_config)]
    for t in range(16):  # the one-token decode path folds query heads instead of repeating K/V
        g = grouped(ids[:, t:t + 1], cache=caches[0], start=t)
        m = mha(ids[:, t:t + 1], cache=caches[1], start=t)
        torch.testing.assert_close(g, m, atol=ATOL, rtol=0)


@torch.inference_mode()
def test_sliding_window_limits_attention_and_cached_paths_agree() -> None:
    config = small(sliding_window=5)
    model, ids = random_model(config), ids_of(20)
    ref = model(ids)
    full = build_model(config.with_(sliding_window=None), to_canonical(model))(ids)
    torch.testing.assert_close(ref[:, :5], full[:, :5], atol=ATOL, rtol=0)  # inside the window: same
    assert (ref[:, 6:] - full[:, 6:]).abs().max() > 1e-2  # beyond it: the window changes the result
    cache = KVCache(config, 1, 20)
    steps = [model(ids[:, :7], cache=cache, start=0)]
    steps += [model(ids[:, t:t + 1], cache=cache, start=t) for t in range(7, 12)]
    steps.append(model(ids[:, 12:], cache=cache, start=12))
    torch.testing.assert_close(torch.cat(steps, dim=1), ref, atol=ATOL, rtol=0)


@torch.inference_mode()
def test_tied_head_shares_the_embedding() -> None:
    model = build_model(small(tie_embeddings=True), to_canonical(random_model(small(tie_embeddings=True))))
    assert model.lm_head.weight.data_ptr() == model.embed.weight.data_ptr()


def test_positions_beyond_the_cache_or_context_raise_context_length_error() -> None:
    config = small(max_seq_len=16)
    model = random_model(config)
    with pytest.raises(ContextLengthError, match="17"):
        model(ids_of(17))
    cache = KVCache(config, 1, 8)
    with pytest.raises(ContextLengthError, match="context of 8"):
        model(ids_of(2), cache=cache, start=7)


@torch.inference_mode()
def test_state_dict_round_trip_through_canonical_names(config: ModelConfig) -> None:
    model = random_model(config)
    state = to_canonical(model)
    assert {k: tuple(v.shape) for k, v in state.items()} == canonical_shapes(config)
    ids = ids_of(9)
    torch.testing.assert_close(build_model(config, state)(ids), model(ids), atol=0, rtol=0)


def test_build_model_keeps_weights_already_in_the_target_dtype_uncopied() -> None:
    config = small()
    state = to_canonical(random_model(config))
    model = build_model(config, state)
    assert model.embed.weight.data_ptr() == state["embed.weight"].data_ptr()
    assert model.layers[1].attn.wo.weight.data_ptr() == state["layers.1.attn.wo.weight"].data_ptr()


def test_bf16_model_runs_close_to_fp32() -> None:
    config = small()
    state = to_canonical(random_model(config))
    ids = ids_of(12)
    with torch.inference_mode():
        ref = build_model(config, state)(ids)
        low = build_model(config, state, dtype=torch.bfloat16)(ids)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_weights_that_do_not_fit_the_config_are_named() -> None:
    config = small()
    state = to_canonical(random_model(config))
    missing = {k: v for k, v in state.items() if k != "layers.1.mlp.w_up.weight"}
    with pytest.raises(ModelLoadError, match=r"missing tensors layers\.1\.mlp\.w_up\.weight"):
        check_state_dict(config, missing)
    with pytest.raises(ModelLoadError, match=r"layers\.0\.attn\.wk\.weight \(16, 48\) \(config says \(48, 48\)\)"):
        build_model(config.with_(n_kv_heads=6), state)
    with pytest.raises(ModelLoadError, match=r"unexpected tensors extra\.weight"):
        check_state_dict(config, {**state, "extra.weight": torch.zeros(1)})
