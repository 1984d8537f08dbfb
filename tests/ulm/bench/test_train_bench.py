"""`ulm bench train`: µLM's training step and HF transformers' on the same config, weights and batch (equal
first-step losses), with tokens/s, MFU and the ratio to HF eager in one table.

Run: .venv/bin/python -m pytest tests/ulm/bench/test_train_bench.py -q
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ulm.bench.train import render, run_train_bench
from ulm.cli import app


def test_both_engines_train_the_same_model_and_are_timed() -> None:
    report = run_train_bench("tiny", seq_len=32, batch=2, steps=2, warmup=1, engines=["ulm-eager", "hf"],
                             device_name="cpu")
    ulm_row, hf_row = report["results"]
    assert (ulm_row["engine"], hf_row["engine"]) == ("ulm-eager", "hf")
    assert ulm_row["first_loss"] == pytest.approx(hf_row["first_loss"], rel=1e-5)  # same weights, same batch
    assert ulm_row["first_loss"] > 10  # ≈ ln(49152): a fresh model
    for row in (ulm_row, hf_row):
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1
        assert row["tokens_per_s"] == pytest.approx(2 * 32 / (row["step_ms"] / 1000))
    assert hf_row["vs_hf"] == 1.0
    assert ulm_row["vs_hf"] == pytest.approx(ulm_row["tokens_per_s"] / hf_row["tokens_per_s"])
    table = render(report)
    assert "ulm-eager" in table and "vs hf" in table and "MFU against" in table


def test_the_command_prints_json_and_refuses_unknown_engines() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "train", "--device", "cpu", "--seq-len", "16", "--batch", "1", "--steps",
                                 "1", "--warmup", "1", "--engines", "ulm-eager", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["preset"] == "tiny" and [r["engine"] for r in report["results"]] == ["ulm-eager"]
    assert report["results"][0]["vs_hf"] is None  # no HF row to compare with
    bad = runner.invoke(app, ["bench", "train", "--engines", "jax"])
    assert bad.exit_code == 2 and "unknown engine(s) jax" in bad.output
