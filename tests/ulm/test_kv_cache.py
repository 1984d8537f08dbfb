"""ulm.kv_cache: its lifecycle (allocate, commit and advance, truncate for prefix reuse, grow, reset) and its errors.

Run: .venv/bin/python -m pytest tests/ulm/test_kv_cache.py -q
"""

from __future__ import annotations

import pytest
import torch

from ulm.config import ModelConfig
from ulm.kv_cache import KVCache
from ulm.model import Transformer

CONFIG = ModelConfig(vocab_size=61, dim=32, n_layers=3, n_heads=4, n_kv_heads=2, hidden_dim=64, max_seq_len=64)


def test_buffers_have_the_kv_head_shape_and_start_empty() -> None:
    cache = KVCache(CONFIG, max_batch=3, max_len=20, dtype=torch.bfloat16)
    assert cache.k.shape == cache.v.shape == (3, 3, 2, 20, 8)
    assert cache.k.dtype == torch.bfloat16
    assert cache.lengths.tolist() == [0, 0, 0]
    assert (cache.max_batch, cache.max_len) == (3, 20)
    assert cache.nbytes == CONFIG.kv_cache_bytes(3, 20, bytes_per_elem=2)


def test_advance_truncate_and_reset_keep_lengths() -> None:
    cache = KVCache(CONFIG, max_batch=3, max_len=20)
    cache.advance([0, 2], 5)
    cache.advance(2, 3)
    cache.advance(torch.tensor([0, 1]), torch.tensor([1, 4]))
    assert cache.lengths.tolist() == [6, 4, 8]
    cache.truncate(2, 2)
    assert cache.lengths.tolist() == [6, 4, 2]
    cache.reset([1])
    assert cache.lengths.tolist() == [6, 0, 2]
    cache.reset()
    assert cache.lengths.tolist() == [0, 0, 0]


def test_truncate_cannot_grow_a_row_and_advance_cannot_pass_max_len() -> None:
    cache = KVCache(CONFIG, max_batch=1, max_len=8)
    cache.advance(0, 4)
    with pytest.raises(ValueError, match="cannot truncate row 0 of length 4 to 5"):
        cache.truncate(0, 5)
    with pytest.raises(ValueError, match="past its max length 8"):
        cache.advance(0, 5)
    assert cache.lengths.tolist() == [8]
    with pytest.raises(ValueError, match="max_batch > 0"):
        KVCache(CONFIG, max_batch=0, max_len=8)


@torch.inference_mode()
def test_truncated_prefix_is_reused_for_a_new_continuation() -> None:
    torch.manual_seed(0)
    model = Transformer(CONFIG).eval()
    shared = torch.randint(0, 61, (1, 10))
    first, second = torch.randint(0, 61, (1, 6)), torch.randint(0, 61, (1, 4))
    cache = KVCache(CONFIG, 1, 32)
    model(torch.cat([shared, first], dim=1), cache=cache, start=0)
    cache.advance(0, 16)
    cache.truncate(0, 10)  # keep the shared prefix, prefill only the new tokens
    out = model(second, cache=cache)
    ref = model(torch.cat([shared, second], dim=1))[:, 10:]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_commit_records_a_write_and_drops_what_followed_it() -> None:
    cache = KVCache(CONFIG, max_batch=3, max_len=20)
    cache.commit([0, 1, 2], [0, 0, 0], [9, 5, 7])
    cache.commit([2, 0], [3, 9], [1, 1])  # row 2 rewritten from position 3 on, row 0 one more token
    cache.commit([1], [5], [4])
    assert cache.lengths.tolist() == [10, 9, 4]
    with pytest.raises(ValueError, match="max length 20"):
        cache.commit([0], [18], [3])
    assert cache.lengths.tolist() == [10, 9, 4]


@torch.inference_mode()
def test_grow_keeps_what_the_rows_hold() -> None:
    torch.manual_seed(0)
    model = Transformer(CONFIG).eval()
    ids = torch.randint(0, 61, (1, 12))
    cache = KVCache(CONFIG, 1, 8)
    model(ids[:, :8], cache=cache, start=0)
    cache.commit([0], [0], [8])
    cache.grow(16)
    assert (cache.max_len, cache.lengths.tolist()) == (16, [8])
    out = model(ids[:, 8:], cache=cache, start=8)
    torch.testing.assert_close(out, model(ids)[:, 8:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="shrink"):
        cache.grow(4)
