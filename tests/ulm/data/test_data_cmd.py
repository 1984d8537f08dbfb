"""`ulm data build` and `ulm data info` as a user runs them: a real subprocess in a pipe (plain progress lines on
stderr, the summary on stdout), one-line errors without a traceback, and `info --verify` catching a damaged shard.

Run: .venv/bin/python -m pytest tests/ulm/data/test_data_cmd.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def ulm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    return subprocess.run([sys.executable, "-m", "ulm", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_build_then_info_in_a_pipe(tmp_path: Path, stdlib_corpus: Path, small_tokenizer_dir: Path) -> None:
    done = ulm("data", "build", str(stdlib_corpus / "json"), str(stdlib_corpus / "glob.py"), "--out", "ds",
               "--tokenizer", str(small_tokenizer_dir), "--val-fraction", "0.3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("wrote ds: ") and "duplicates dropped" in done.stdout
    assert "reading 6 files" in done.stderr and "read 6/6 files" in done.stderr  # plain progress, no bar
    assert "\x1b[" not in done.stderr

    info = ulm("data", "info", "ds", "--json", cwd=tmp_path)
    manifest = json.loads(info.stdout)
    assert manifest["command"].startswith("ulm data build ") and "--val-fraction 0.3" in manifest["command"]
    assert manifest["tokenizer"]["vocab_size"] == 512 and manifest["token_dtype"] == "uint16"
    table = ulm("data", "info", "ds", "--verify", cwd=tmp_path)
    assert table.returncode == 0 and "every shard matches its sha256" in table.stdout
    assert "train" in table.stdout and "glob.py" in table.stdout

    shard = tmp_path / "ds" / manifest["splits"]["train"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    damaged = ulm("data", "info", "ds", "--verify", cwd=tmp_path)
    assert damaged.returncode == 1 and damaged.stderr.startswith("error: ") and "sha256" in damaged.stderr


def test_errors_are_one_line(tmp_path: Path, small_tokenizer_dir: Path) -> None:
    missing = ulm("data", "build", "nowhere", "--out", "ds", "--tokenizer", str(small_tokenizer_dir), cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr == "error: nowhere: no such file or directory\n"
    not_a_dataset = ulm("data", "info", str(tmp_path), cwd=tmp_path)
    assert not_a_dataset.returncode == 1 and "not a dataset" in not_a_dataset.stderr
    assert "Traceback" not in missing.stderr + not_a_dataset.stderr
