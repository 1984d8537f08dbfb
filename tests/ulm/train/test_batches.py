"""Which windows each rank trains on: a permutation per epoch, contiguous slices per rank that together make the
single-process batch, masked targets IGNOREd, validation windows in order.

Run: .venv/bin/python -m pytest tests/ulm/train/test_batches.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ulm.data.build import BuildOptions, build_dataset
from ulm.data.dataset import open_dataset
from ulm.train.batches import IGNORE, WindowSampler


def test_each_window_once_per_epoch_and_ranks_split_the_global_batch(small_dataset: Path) -> None:
    split = open_dataset(small_dataset).train
    sampler = WindowSampler(split, seq_len=32, seed=3)
    n = sampler.n_windows
    assert n == (split.n_tokens - 1) // 32 > 100
    epoch0 = [sampler.window(k) for k in range(n)]
    epoch1 = [sampler.window(k) for k in range(n, 2 * n)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(n)) and epoch0 != epoch1
    assert epoch0 == [WindowSampler(split, 32, seed=3).window(k) for k in range(n)]  # the seed decides
    assert epoch0 != [WindowSampler(split, 32, seed=4).window(k) for k in range(n)]
    whole = sampler.train_step(first=40, batch_size=8, micro_batch=4, rank=0, world=1)
    ranks = [sampler.train_step(first=40, batch_size=8, micro_batch=2, rank=r, world=2) for r in range(2)]
    ids = torch.cat([b[0] for b in whole])
    assert torch.equal(ids, torch.cat([b[0] for r in ranks for b in r]))
    ids0, targets0 = whole[0]
    w = sampler.window(40)
    tokens = torch.from_numpy(split.tokens(w * 32, 33))
    assert torch.equal(ids0[0], tokens[:-1]) and torch.equal(targets0[0], tokens[1:])


def test_masked_targets_are_ignored_and_validation_is_in_order(tmp_path: Path, small_tokenizer_dir: Path) -> None:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"q{i} " * 8},
                                      {"role": "assistant", "content": f"a{i} " * 8}]}) for i in range(12)]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    build_dataset([str(tmp_path / "c.jsonl")], tmp_path / "d", BuildOptions(tokenizer=str(small_tokenizer_dir),
                                                                             val_fraction=0.0))
    split = open_dataset(tmp_path / "d").train
    masked = WindowSampler(split, 16, use_mask=True)
    plain = WindowSampler(split, 16)
    ids_m, targets_m = masked.batch([0, 1, 2])
    ids_p, targets_p = plain.batch([0, 1, 2])
    assert torch.equal(ids_m, ids_p)
    expected = torch.stack([torch.where(torch.from_numpy(split.mask(w * 16 + 1, 16)), targets_p[i], IGNORE)
                            for i, w in enumerate([0, 1, 2])])
    assert torch.equal(targets_m, expected)
    assert (targets_m == IGNORE).any() and (targets_m != IGNORE).any()
    evals = plain.eval_batches(n=7, micro_batch=2, rank=1, world=2)  # windows 1, 3, 5
    assert torch.equal(torch.cat([b[0] for b in evals]), plain.batch([1, 3, 5])[0])
