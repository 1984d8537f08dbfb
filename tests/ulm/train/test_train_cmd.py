"""`ulm train` as a command: the assembled config (--print-config), a short run's summary, one-line errors.

Run: .venv/bin/python -m pytest tests/ulm/train/test_train_cmd.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ulm.cli import app

runner = CliRunner()


def test_print_config_shows_the_layers_applied(tmp_path: Path, small_dataset: Path) -> None:
    (tmp_path / "run.toml").write_text('preset = "tiny"\n[train]\nlr = 0.001\n')
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "run.toml"), "--data", str(small_dataset),
                                 "--out", str(tmp_path / "o"), "--kv-heads", "1", "--rope-scaling", "linear:2",
                                 "--set", "train.warmup_steps=7", "--print-config"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["preset"] == "tiny" and run["model"]["n_kv_heads"] == 1
    assert run["model"]["rope_scaling"]["kind"] == "linear" and run["model"]["rope_scaling"]["factor"] == 2.0
    assert run["train"]["lr"] == 0.001 and run["train"]["warmup_steps"] == 7
    assert not (tmp_path / "o").exists()


def test_a_short_run_prints_its_summary(tmp_path: Path, small_dataset: Path) -> None:
    result = runner.invoke(app, ["train", "--preset", "tiny", "--set", "model.vocab_size=512", "--data",
                                 str(small_dataset), "--out", str(tmp_path / "o"), "--steps", "3", "--seq-len", "32",
                                 "--batch-size", "4", "--micro-batch", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("trained 3/3 steps, val loss ") and "tokens/s" in result.stdout
    again = runner.invoke(app, ["train", "--resume", "--data", str(small_dataset), "--out", str(tmp_path / "o"),
                                "--steps", "5", "--stop-at", "4", "--quiet"])
    assert again.exit_code == 0 and "stopped after 4/5 steps (--stop-at 4)" in again.stdout
    assert "ulm train --resume --data" in again.stdout


def test_errors_are_one_line(tmp_path: Path, small_dataset: Path) -> None:
    cases = {
        "name a preset": ["--data", str(small_dataset), "--out", str(tmp_path / "o")],
        "unknown preset 'big'": ["--preset", "big", "--data", str(small_dataset), "--out", str(tmp_path / "o")],
        "not a dataset": ["--preset", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        "train.schedule 'cos'": ["--preset", "tiny", "--schedule", "cos", "--data", str(small_dataset),
                                 "--out", str(tmp_path / "o")],
        "drop --preset": ["--resume", "--preset", "tiny", "--data", str(small_dataset), "--out", str(tmp_path / "o")],
        "drop n_layers": ["--resume", "--layers", "3", "--data", str(small_dataset), "--out", str(tmp_path / "o")],
    }
    for message, args in cases.items():
        result = runner.invoke(app, ["train", *args])
        assert result.exit_code in (1, 2), (message, result.output)
        assert message in result.stderr and result.stderr.count("\n") == 1, (message, result.stderr)
