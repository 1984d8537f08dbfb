"""The optimiser's decay groups, the learning-rate schedules, the weight init, the FLOPs count.

Run: .venv/bin/python -m pytest tests/ulm/train/test_optim.py -q
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ulm.config import PRESETS, ModelConfig
from ulm.train.config import TrainConfig
from ulm.train.flops import flops_per_token, matmul_params, mfu
from ulm.train.init import new_model
from ulm.train.optim import build_optimizer, lr_at, param_groups

SMALL = ModelConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64, qkv_bias=True)


@pytest.mark.parametrize("tied", [True, False])
def test_no_decay_on_norms_biases_and_embeddings(tied: bool) -> None:
    model = new_model(SMALL.with_(tie_embeddings=tied), "cpu")
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    kept = sorted(names[id(p)] for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(".wqkv.weight" in n or ".wo." in n or ".w_" in n or n == "lm_head.weight" for n in decayed)
    assert ("lm_head.weight" in decayed) == (not tied)
    assert "embed.weight" in kept and all(n == "embed.weight" or "norm" in n or n.endswith(".bias") for n in kept)
    assert len(decayed) + len(kept) == len(list(model.parameters()))  # every parameter once, the tied one too
    optimizer = build_optimizer(model, TrainConfig(), torch.device("cpu"))
    assert optimizer.defaults["betas"] == (0.9, 0.95)


def test_cosine_warms_up_then_decays_to_the_floor() -> None:
    train = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1, schedule="cosine")
    lrs = [lr_at(s, train) for s in range(110)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 50 / 99)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_wsd_holds_then_decays_linearly_over_the_last_fraction() -> None:
    train = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.0, schedule="wsd", decay_fraction=0.2)
    lrs = [lr_at(s, train) for s in range(100)]
    assert lrs[10:80] == [1.0] * 70
    assert lrs[80:] == pytest.approx([1 - (i + 1) / 20 for i in range(20)])
    constant = TrainConfig(steps=100, lr=0.5, warmup_steps=0, schedule="constant")
    assert {lr_at(s, constant) for s in range(100)} == {0.5}


def test_init_is_seeded_with_scaled_residual_projections() -> None:
    config = PRESETS["tiny"].with_(n_layers=8, vocab_size=4096, dim=128, n_heads=4, n_kv_heads=2, hidden_dim=512)
    a, b, c = new_model(config, "cpu", seed=1), new_model(config, "cpu", seed=1), new_model(config, "cpu", seed=2)
    assert torch.equal(a.embed.weight, b.embed.weight) and not torch.equal(a.embed.weight, c.embed.weight)
    assert a.lm_head.weight is a.embed.weight and a.embed.weight.requires_grad
    assert a.embed.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert a.layers[0].attn.wo.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert a.layers[0].mlp.w_gate_up.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(a.layers[3].attn_norm.weight, torch.ones(128))


def test_flops_per_token_counts_matmul_weights_and_attention() -> None:
    smol = PRESETS["smollm2-135m"]
    n = matmul_params(smol)
    assert n == smol.n_params() - (2 * 30 + 1) * 576  # tied embedding counted once, as the LM head
    assert flops_per_token(smol, 1024) == 6 * n + 12 * 30 * 9 * 64 * 1024
    untied = smol.with_(tie_embeddings=False)
    assert matmul_params(untied) == n  # an untied input embedding is a lookup: no FLOPs
    assert mfu(10_000, 1e9, 1e14) == pytest.approx(0.1)
