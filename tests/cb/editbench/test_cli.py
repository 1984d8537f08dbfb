"""`cb bench` as a group: alone it is still the overhead benchmark (= `cb bench overhead`); `cb bench edits`
prints the table or JSON, plain progress lines in a pipe, the corpus with --list, and one-line errors.

Run: .venv/bin/python -m pytest tests/cb/editbench/test_cli.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cb.cli import app
from cb.editbench import corpus, wiring
from tests.cb.scripted_server import Reply, ScriptedServer


def cb(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cb", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})


def test_bench_alone_still_runs_the_overhead_benchmark_and_so_does_bench_overhead() -> None:
    for args in (["bench", "--runs", "1", "--no-round-trip"], ["bench", "overhead", "-n", "1", "--no-round-trip"]):
        done = cb(*args)
        assert done.returncode == 0, done.stderr
        assert "start-up: --help wall time" in done.stdout and "ratio of medians" in done.stdout
    listing = CliRunner().invoke(app, ["bench", "--help"])
    assert listing.exit_code == 0 and "overhead" in listing.output and "edits" in listing.output


def test_edits_list_prints_the_corpus_per_tier_and_split() -> None:
    result = CliRunner().invoke(app, ["bench", "edits", "--list", "--split", "all"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("cb bench edits corpus ") and lines[1].split() == ["tier", "heldout", "dev", "all"]
    total = lines[-1].split()
    assert total[0] == "total" and int(total[3]) == len(corpus.load()) == int(total[1]) + int(total[2])


def test_edits_runs_against_a_server_with_progress_lines_and_json(scripted: ScriptedServer, tmp_path: Path) -> None:
    tasks = corpus.select(corpus.load(), "dev", (), 3)
    scripted.enqueue(Reply([wiring.reference_answer(tasks[0])]), Reply(["no idea"]),
                     Reply([wiring.reference_answer(tasks[2])]))
    out = tmp_path / "run.json"
    done = cb("bench", "edits", "--base-url", scripted.base_url, "--split", "dev", "--limit", "3", "--json",
              "--out", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert json.loads(out.read_text()) == data
    assert data["split"] == "dev" and data["model"] == "scripted" and data["limit"] == 3
    assert [t["id"] for t in data["tasks"]] == [t.id for t in tasks]
    assert [t["correct"] for t in data["tasks"]] == [True, False, True]
    assert data["tasks"][1]["reason"] == "no edit proposed" and data["tasks"][1]["answer"] == "no idea"
    total = data["tiers"][-1]
    assert (total["tier"], total["tasks"], total["correct"], total["correct_pct"]) == ("total", 3, 2, 66.7)
    progress = done.stderr.splitlines()
    assert progress[0].startswith(f"[1/3] {tasks[0].id}: correct (") and "no edit proposed" in progress[1]


def test_edits_prints_the_table_naming_the_split(scripted: ScriptedServer) -> None:
    task = corpus.select(corpus.load(), "heldout", ("rename",), 1)[0]
    scripted.enqueue(Reply([wiring.reference_answer(task)]))
    done = cb("bench", "edits", "--base-url", scripted.base_url, "--split", "heldout", "--tier", "rename",
              "--limit", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cb bench edits: split heldout, 1 tasks; model scripted at ")
    assert lines[1].split()[:6] == ["tier", "tasks", "well-formed", "applicable", "correct", "escapes"]
    assert lines[2].split()[:6] == ["rename", "1", "100.0%", "100.0%", "100.0%", "0"]
    assert lines[3].split()[:5] == ["total", "1", "100.0%", "100.0%", "100.0%"]


def test_edits_errors_are_one_line() -> None:
    down = cb("bench", "edits", "--base-url", "http://127.0.0.1:9/v1", "--limit", "1")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stderr.strip().splitlines() == ["cb: cannot reach the model server at http://127.0.0.1:9/v1 "
                                                "(is it running?)"]
    bad = CliRunner().invoke(app, ["bench", "edits", "--tier", "nope"])
    assert bad.exit_code == 2 and "unknown tier 'nope'" in bad.output


def test_edits_says_when_the_model_is_not_served(scripted: ScriptedServer) -> None:
    done = cb("bench", "edits", "--base-url", scripted.base_url, "--model", "nope", "--limit", "1")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "model 'nope' is not served at" in done.stderr and "it serves: scripted" in done.stderr
