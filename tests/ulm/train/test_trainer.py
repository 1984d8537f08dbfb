"""The training loop: the loss falls on real source code, a stopped-and-resumed run equals the uninterrupted one bit
for bit, the trained directory loads with `ulm.load`, and the logs (JSONL, TensorBoard, PNG) hold the run.

Run: .venv/bin/python -m pytest tests/ulm/train/test_trainer.py -q
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.ulm.train.runs import tiny_run
from ulm.config import ConfigError
from ulm.data.errors import DataError
from ulm.train.logs import read_metrics
from ulm.train.trainer import RunSpec, run_training


def losses(out: Path, event: str = "train") -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_metrics(out) if e["event"] == event}


@pytest.mark.slow
def test_the_loss_falls_on_standard_library_source(tmp_path: Path, small_dataset: Path) -> None:
    import numpy as np

    from ulm.data.dataset import open_dataset

    run = tiny_run(steps=150, lr=2e-2, init_std=0.05, seq_len=64, batch_size=16, micro_batch=16, warmup_steps=10,
                   eval_every=75, eval_sequences=32, log_every=1)
    result = run_training(RunSpec(small_dataset, tmp_path / "run", run, quiet=True))
    val = losses(tmp_path / "run", "val")
    assert result["step"] == 150 and set(val) == {75, 150}
    first = losses(tmp_path / "run")[1]
    assert first > math.log(512) - 0.3  # a fresh model is near uniform over the 512 tokens
    train = open_dataset(small_dataset).train
    tokens = train.tokens(0, train.n_tokens)
    p = np.bincount(tokens, minlength=512) / len(tokens)
    unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())  # the best loss without looking at the context
    assert val[150] < val[75] < first - 1.0
    assert val[150] < unigram - 0.3  # held-out code predicted from its context, beyond token frequencies
    assert result["val_loss"] == val[150] and result["tokens_per_s"] > 0


def test_a_stopped_and_resumed_run_equals_the_uninterrupted_one(tmp_path: Path, small_dataset: Path) -> None:
    run = tiny_run(steps=10, save_every=4, keep_checkpoints=5)
    run_training(RunSpec(small_dataset, tmp_path / "whole", run, quiet=True))
    stopped = run_training(RunSpec(small_dataset, tmp_path / "parts", run, stop_at=6, quiet=True))
    assert stopped["stopped"] == "--stop-at 6" and stopped["step"] == 6
    resumed = run_training(RunSpec(small_dataset, tmp_path / "parts", resume=True, quiet=True))
    assert resumed["step"] == 10 and resumed["stopped"] is None
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert (whole / "model.safetensors").read_bytes() == (parts / "model.safetensors").read_bytes()
    assert losses(whole) == losses(parts)  # every step's loss, before and after the stop
    assert losses(whole, "val") == losses(parts, "val")
    opt_whole = torch.load(whole / "checkpoints" / "step-00000010" / "optimizer.pt", weights_only=True)
    opt_parts = torch.load(parts / "checkpoints" / "step-00000010" / "optimizer.pt", weights_only=True)
    for a, b in zip(opt_whole["state"].values(), opt_parts["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    names = sorted(p.name for p in (parts / "checkpoints").iterdir())
    assert names == ["step-00000004", "step-00000006", "step-00000008", "step-00000010"]


def test_the_run_directory_is_a_model_ulm_loads(tmp_path: Path, small_dataset: Path) -> None:
    import ulm
    from ulm.train.init import model_from_state

    run = tiny_run(steps=4, model={"norm": "layernorm", "mlp": "gelu", "n_kv_heads": 1})
    run_training(RunSpec(small_dataset, tmp_path / "run", run, quiet=True))
    loaded = ulm.load(str(tmp_path / "run"))
    assert loaded.config.norm == "layernorm" and loaded.config.mlp == "gelu" and loaded.config.n_kv_heads == 1
    assert loaded.config.eos_token_ids  # filled from the dataset's tokenizer
    ids = torch.tensor([[5, 77, 301, 12, 9]])
    from ulm.train import checkpoint

    restored = checkpoint.restore(checkpoint.latest(tmp_path / "run"))
    trained = model_from_state(restored.config, restored.weights, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(loaded.logits(ids), trained(ids), atol=1e-5, rtol=0)
    assert loaded.generate("def ", max_tokens=4, temperature=0).usage.completion_tokens >= 1


def test_logs_hold_the_run(tmp_path: Path, small_dataset: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run_training(RunSpec(small_dataset, out, tiny_run(steps=6, log_every=2, eval_every=3), quiet=True))
    events = read_metrics(out)
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    train = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in train] == [2, 4, 6]
    for e in train:
        assert e["tokens"] == e["step"] * 8 * 32 and e["tokens_per_s"] > 0 and 0 < e["mfu"] < 1
        assert e["lr"] > 0 and e["grad_norm"] > 0
    assert [e["step"] for e in events if e["event"] == "val"] == [3, 6]
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [s.step for s in acc.Scalars("train/loss")] == [2, 4, 6]
    assert [s.step for s in acc.Scalars("val/loss")] == [3, 6]
    png = (out / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_a_second_run_into_the_same_out_or_a_changed_resume_is_refused(tmp_path: Path, small_dataset: Path) -> None:
    run = tiny_run(steps=2)
    run_training(RunSpec(small_dataset, tmp_path / "run", run, quiet=True))
    with pytest.raises(DataError, match="already holds a run"):
        run_training(RunSpec(small_dataset, tmp_path / "run", run, quiet=True))
    with pytest.raises(ConfigError, match="cannot change lr"):
        run_training(RunSpec(small_dataset, tmp_path / "run", resume=True, resume_changes={"lr": 1.0}, quiet=True))
    with pytest.raises(DataError, match="no checkpoint to resume"):
        run_training(RunSpec(small_dataset, tmp_path / "empty", resume=True, quiet=True))
    longer = run_training(RunSpec(small_dataset, tmp_path / "run", resume=True, resume_changes={"steps": 3},
                                  quiet=True))
    assert longer["step"] == 3


def test_a_sequence_longer_than_the_data_is_a_clear_error(tmp_path: Path, small_tokenizer_dir: Path) -> None:
    from ulm.data.build import BuildOptions, build_dataset

    (tmp_path / "short.py").write_text("x = 1\n" * 20)
    build_dataset([str(tmp_path / "short.py")], tmp_path / "d", BuildOptions(tokenizer=str(small_tokenizer_dir),
                                                                              val_fraction=0.0))
    with pytest.raises(DataError, match="fewer than seq_len"):
        run_training(RunSpec(tmp_path / "d", tmp_path / "run", tiny_run(seq_len=500), quiet=True))
