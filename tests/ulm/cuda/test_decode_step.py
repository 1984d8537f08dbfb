"""ulm.cuda.graphs' capturable decode step, run eagerly on the CPU: it equals the model's own forward for rows
at different positions, writes K/V only where its rows sit, honours the sliding window, and its buckets.

Run: .venv/bin/python -m pytest tests/ulm/cuda/test_decode_step.py -q
"""

from __future__ import annotations

import pytest
import torch

from ulm.config import ModelConfig
from ulm.cuda.graphs import bucket, decode_step
from ulm.kv_cache import KVCache
from ulm.model import Transformer

CONFIG = ModelConfig(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=128, max_seq_len=64,
                     qkv_bias=True)


def _model(config: ModelConfig = CONFIG) -> Transformer:
    torch.manual_seed(0)
    return Transformer(config).eval()


def _prefilled(net: Transformer, prompts: list[list[int]], rows: int) -> KVCache:
    """A cache of `rows` rows (the last one scratch) holding each prompt in its own row."""
    cache = KVCache(net.config, rows, 32)
    for row, prompt in enumerate(prompts):
        net(torch.tensor([prompt]), cache=cache, start=torch.tensor([0]), rows=torch.tensor([row]))
        cache.commit([row], [0], [len(prompt)])
    return cache


@torch.inference_mode()
def test_decode_step_equals_the_forward_of_each_row_alone() -> None:
    net = _model()
    prompts = [[5, 9, 3], [7, 1, 2, 8, 4, 6], [11]]
    nxt = [13, 17, 19]
    cache = _prefilled(net, prompts, rows=4)
    reference = _prefilled(net, prompts, rows=4)
    inputs = torch.tensor([nxt, [0, 1, 2], [len(p) for p in prompts]])  # (ids, rows, positions)
    got = decode_step(net, cache, inputs, keys=16)  # [3, V]
    for b, prompt in enumerate(prompts):
        want = net(torch.tensor([[nxt[b]]]), cache=reference, start=torch.tensor([len(prompt)]),
                   rows=torch.tensor([b]))[0, -1]
        torch.testing.assert_close(got[b], want.float(), rtol=1e-5, atol=1e-5)
    # the step wrote each row's new K/V at its own position, as the forward did
    for b, prompt in enumerate(prompts):
        torch.testing.assert_close(cache.k[:, b, :, len(prompt)], reference.k[:, b, :, len(prompt)])
    assert cache.lengths.tolist() == [3, 6, 1, 0]  # a step records nothing: the backend commits


@torch.inference_mode()
def test_padding_rows_write_only_the_scratch_row() -> None:
    net = _model()
    cache = _prefilled(net, [[1, 2, 3], [4, 5]], rows=3)
    before = cache.k[:, :2].clone(), cache.v[:, :2].clone()
    scratch = 2
    inputs = torch.tensor([[6, 0, 0, 0], [0, scratch, scratch, scratch], [3, 0, 0, 0]])  # one real row, 3 pads
    decode_step(net, cache, inputs, keys=8)
    torch.testing.assert_close(cache.k[:, 1], before[0][:, 1])  # row 1 untouched
    torch.testing.assert_close(cache.k[:, 0, :, :3], before[0][:, 0, :, :3])  # row 0's prompt untouched
    assert not torch.equal(cache.k[:, 0, :, 3], before[0][:, 0, :, 3])  # its new position written


@torch.inference_mode()
def test_the_sliding_window_limits_what_a_step_attends_to() -> None:
    config = ModelConfig(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=4, hidden_dim=128,
                         max_seq_len=64, sliding_window=4)
    net = _model(config)
    prompt = list(range(1, 10))
    cache, reference = _prefilled(net, [prompt], rows=2), _prefilled(net, [prompt], rows=2)
    got = decode_step(net, cache, torch.tensor([[20], [0], [len(prompt)]]), keys=16)
    want = net(torch.tensor([[20]]), cache=reference, start=len(prompt), last_only=True)[0, -1]
    torch.testing.assert_close(got[0], want.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n", "smallest", "largest", "want"),
                         [(1, 1, 32, 1), (3, 1, 32, 4), (33, 1, 32, 32), (65, 256, 2048, 256), (257, 256, 2048, 512),
                          (3000, 256, 2048, 2048)])
def test_buckets_are_powers_of_two_within_bounds(n: int, smallest: int, largest: int, want: int) -> None:
    assert bucket(n, smallest, largest) == want
