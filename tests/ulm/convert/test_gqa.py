"""MHA → GQA by mean-pooling K/V heads: exact with group size 1, the pooled means otherwise, a model directory
`ulm.load` reads, and `ulm train --init` uptrains it.

Run: .venv/bin/python -m pytest tests/ulm/convert/test_gqa.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import ulm
from ulm.cli import app
from ulm.convert.errors import ConvertError
from ulm.convert.gqa import to_gqa
from ulm.convert.source import load_source

runner = CliRunner()
IDS = torch.tensor([[1, 504, 2231, 77, 9, 40000, 12]])


def test_group_size_one_is_an_exact_copy(tmp_path: Path, tiny_mha_dir: Path) -> None:
    result = runner.invoke(app, ["convert", "gqa", str(tiny_mha_dir), "--kv-heads", "4", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    before, after = ulm.load(str(tiny_mha_dir)), ulm.load(str(tmp_path / "o"))
    assert after.config.n_kv_heads == 4
    assert torch.equal(before.logits(IDS), after.logits(IDS))
    src, out = load_source(str(tiny_mha_dir)), load_source(str(tmp_path / "o"))
    assert all(torch.equal(src.state[k], out.state[k]) for k in src.state)


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_each_group_becomes_the_mean_of_its_heads(tiny_mha_dir: Path, kv_heads: int) -> None:
    src = load_source(str(tiny_mha_dir))
    config, state = to_gqa(src.config, src.state, kv_heads)
    assert config.n_kv_heads == kv_heads and config.n_heads == 4
    hd, g = src.config.head_dim, 4 // kv_heads
    for i in range(src.config.n_layers):
        for w in ("wk", "wv"):
            old = src.state[f"layers.{i}.attn.{w}.weight"]  # [4·hd, D]
            new = state[f"layers.{i}.attn.{w}.weight"]  # [kv_heads·hd, D]
            for j in range(kv_heads):
                heads = [old[(j * g + h) * hd:(j * g + h + 1) * hd] for h in range(g)]
                torch.testing.assert_close(new[j * hd:(j + 1) * hd], sum(heads) / g, atol=1e-7, rtol=0)
        assert torch.equal(state[f"layers.{i}.attn.wq.weight"], src.state[f"layers.{i}.attn.wq.weight"])


def test_qkv_biases_are_pooled_too(tiny_qwen2_dir: Path) -> None:
    src = load_source(str(tiny_qwen2_dir))
    assert src.config.n_kv_heads == 2
    _, state = to_gqa(src.config, src.state, 1)
    bias = src.state["layers.0.attn.wk.bias"]
    torch.testing.assert_close(state["layers.0.attn.wk.bias"], (bias[:16] + bias[16:]) / 2)


def test_a_kv_count_that_does_not_divide_is_refused(tmp_path: Path, tiny_mha_dir: Path) -> None:
    src = load_source(str(tiny_mha_dir))
    with pytest.raises(ConvertError, match="must divide the model's 4 key/value heads"):
        to_gqa(src.config, src.state, 3)
    result = runner.invoke(app, ["convert", "gqa", str(tiny_mha_dir), "--kv-heads", "3", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.stderr.startswith("error: --kv-heads 3 must divide")


@pytest.mark.slow
def test_uptraining_starts_from_the_pooled_model(tmp_path: Path, small_dataset: Path) -> None:
    from tests.ulm.train.runs import tiny_run
    from ulm.train.logs import read_metrics
    from ulm.train.trainer import RunSpec, run_training

    mha = tiny_run(steps=30, lr=1e-2, model={"n_kv_heads": 4})
    run_training(RunSpec(small_dataset, tmp_path / "mha", mha, quiet=True))
    result = runner.invoke(app, ["convert", "gqa", str(tmp_path / "mha"), "--kv-heads", "2", "--out",
                                 str(tmp_path / "gqa")])
    assert result.exit_code == 0, result.output
    gqa = tiny_run(steps=10, lr=3e-3, warmup_steps=2)
    run_training(RunSpec(small_dataset, tmp_path / "up", gqa, init=str(tmp_path / "gqa"), quiet=True))
    up = ulm.load(str(tmp_path / "up"))
    assert up.config.n_kv_heads == 2 and up.config.n_heads == 4
    first_up = next(e["loss"] for e in read_metrics(tmp_path / "up") if e["event"] == "train")
    mha_losses = [e["loss"] for e in read_metrics(tmp_path / "mha") if e["event"] == "train"]
    # Uptraining starts near where the MHA model ended, far below a fresh model's loss.
    assert first_up < mha_losses[0] - 0.5 and first_up < mha_losses[-1] + 0.3
