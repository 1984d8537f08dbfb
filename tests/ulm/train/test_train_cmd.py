"""`ulm train` as a command: the assembled config (--print-config), a short run's summary, one-line errors, and
Ctrl-C ending a run cleanly with a checkpoint that resumes.

Run: .venv/bin/python -m pytest tests/ulm/train/test_train_cmd.py -q
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


@pytest.mark.slow
def test_ctrl_c_stops_after_the_step_with_a_checkpoint_that_resumes(tmp_path: Path, small_dataset: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    args = [sys.executable, "-m", "ulm", "train", "--preset", "tiny", "--set", "model.vocab_size=512", "--data",
            str(small_dataset), "--out", str(tmp_path / "run"), "--seq-len", "32", "--batch-size", "4",
            "--micro-batch", "4", "--log-every", "1", "--save-every", "0", "--eval-every", "0"]
    proc = subprocess.Popen([*args, "--steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.is_file() and '"event": "train"' in metrics.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "(a signal)" in out and "ulm train --resume" in out and "Traceback" not in err
    stopped = json.loads(metrics.read_text().splitlines()[-1])
    assert stopped["event"] == "stop" and stopped["stopped"] == "a signal"
    assert (tmp_path / "run" / "checkpoints" / f"step-{stopped['step']:08d}").is_dir()
    resumed = subprocess.run([sys.executable, "-m", "ulm", "train", "--resume", "--data", str(small_dataset), "--out",
                              str(tmp_path / "run"), "--steps", str(stopped["step"] + 2), "--quiet"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"trained {stopped['step'] + 2}/{stopped['step'] + 2} steps")
