"""DDP through torchrun, the same `ulm train` command: 2 CPU processes on gloo equal 1 process at the same global
batch (each rank trains on its own slice), and a checkpoint of the 2-process run resumes in 1 process.

Run: .venv/bin/python -m pytest tests/ulm/train/test_ddp.py -q   (slow: starts several torch processes)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ulm.train.logs import read_metrics

pytestmark = pytest.mark.slow

RUN = ["--preset", "tiny", "--set", "model.vocab_size=512", "--steps", "8", "--seq-len", "32", "--batch-size", "8",
       "--micro-batch", "2", "--warmup", "2", "--log-every", "1", "--eval-every", "4", "--save-every", "4", "--quiet"]


def ulm_train(args: list[str], cwd: Path, nproc: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] \
        if nproc > 1 else [sys.executable]
    done = subprocess.run([*launcher, "-m", "ulm", "train", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def losses(out: Path, event: str = "train") -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_metrics(out) if e["event"] == event}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path) -> Path:
    """The run in one process (the reference of both tests)."""
    cwd = tmp_path_factory.mktemp("single")
    done = ulm_train([*RUN, "--data", str(small_dataset), "--out", "run"], cwd)
    assert done.stdout.count("trained 8/8 steps") == 1
    return cwd / "run"


def test_two_gloo_ranks_equal_one_process_at_the_same_global_batch(tmp_path: Path, small_dataset: Path,
                                                                   single: Path) -> None:
    ddp = ulm_train([*RUN, "--data", str(small_dataset), "--out", "ddp"], tmp_path, nproc=2)
    assert ddp.stdout.count("trained 8/8 steps") == 1  # one summary, from rank 0
    assert read_metrics(tmp_path / "ddp")[0]["world_size"] == 2 and read_metrics(single)[0]["world_size"] == 1
    one, two = losses(single), losses(tmp_path / "ddp")
    assert list(one) == list(two) == list(range(1, 9))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), step
    assert losses(tmp_path / "ddp", "val") == pytest.approx(losses(single, "val"), rel=1e-5)
    assert one[8] < one[1] - 0.1  # they trained
    a, b = load_file(single / "model.safetensors"), load_file(tmp_path / "ddp" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=2e-4, rtol=1e-3)
    # Only rank 0 wrote: one start event, one set of checkpoints.
    assert [e["event"] for e in read_metrics(tmp_path / "ddp")].count("start") == 1
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]


def test_a_two_rank_checkpoint_resumes_in_one_process(tmp_path: Path, small_dataset: Path, single: Path) -> None:
    data = ["--data", str(small_dataset)]
    stopped = ulm_train([*RUN, *data, "--out", "parts", "--stop-at", "4"], tmp_path, nproc=2)
    assert "stopped after 4/8 steps (--stop-at 4)" in stopped.stdout
    ulm_train(["--resume", *data, "--out", "parts", "--quiet"], tmp_path)
    whole, parts = losses(single), losses(tmp_path / "parts")
    assert list(parts) == list(range(1, 9))
    for step in whole:
        assert parts[step] == pytest.approx(whole[step], rel=1e-5), step
    assert [e["world_size"] for e in read_metrics(tmp_path / "parts") if e["event"] == "start"] == [2, 1]
