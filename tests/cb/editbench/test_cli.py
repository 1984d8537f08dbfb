"""`cb bench` as a group: alone it is still the overhead benchmark (= `cb bench overhead`); `cb bench edits`
prints the table or JSON, plain progress lines in a pipe, the corpus with --list, and one-line errors; with
--grammar and --retries it asks for edits as cb ask does and records how (the grammar of each task's files
against ulm serve, the repair rounds a task needed), and without them is one flag each.

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
from cb.editbench.tasks import Task
from cb.grammar import literal
from tests.cb.scripted_server import Reply, ScriptedServer
from tools import OpenFile, file_version


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
              "--retries", "0", "--out", str(out))
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


def _missing_anchor(task: Task) -> str:
    """An answer whose one edit copies a line the task's first file lacks."""
    path = task.open[0]
    return (f'<replace path="{path}" version="{file_version(task.files[path])}">\n<old>\nno such line\n</old>\n'
            "<new>\nx = 1\n</new>\n</replace>\n")


def test_edits_with_the_grammar_and_a_repair_round_record_both(tmp_path: Path) -> None:
    tasks = corpus.select(corpus.load(), "dev", ("literal",), 2)
    with ScriptedServer(owned_by="ulm", props={"grammar": True}) as ulm:
        ulm.enqueue(Reply([_missing_anchor(tasks[0])]), Reply([wiring.reference_answer(tasks[0])]),
                    Reply([wiring.reference_answer(tasks[1])]))
        done = cb("bench", "edits", "--base-url", ulm.base_url, "--tier", "literal", "--limit", "2", "--json")
        assert done.returncode == 0, done.stderr
        bodies = [r["body"] for r in ulm.requests]
    data = json.loads(done.stdout)
    assert (data["grammar"], data["edit_mode"], data["server"], data["retries"]) == ("auto", "grammar", "ulm", 1)
    first, second = data["tasks"]
    assert first["correct"] and first["repaired"] == 1 and first["first_answer"] == _missing_anchor(tasks[0])
    assert first["first_errors"] == [f"{tasks[0].open[0]}: the <old> line 'no such line' is not in the file; "
                                     + first["first_errors"][0].split("is not in the file; ", 1)[1]]
    assert second["correct"] and second["repaired"] == 0 and second["first_errors"] == []
    assert [t["repaired"] for t in data["tiers"]] == [1, 1]
    assert len(bodies) == 3 and bodies[0]["grammar"] == bodies[1]["grammar"] != bodies[2]["grammar"]
    for path in tasks[0].open:  # the grammar of the task's own files (built in the cb process: compared by content)
        f = OpenFile.from_bytes(path, tasks[0].files[path])
        assert f'path=\\"{path}\\" version=\\"{f.version}\\"' in bodies[0]["grammar"]
        assert all(literal(line + "\n") in bodies[0]["grammar"] for line in f.lines if line.strip())
    assert first["first_errors"][0] in bodies[1]["messages"][-1]["content"]


def test_edits_without_the_grammar_nor_retries_is_one_flag_each_and_the_header_says_so() -> None:
    task = corpus.select(corpus.load(), "dev", ("literal",), 1)[0]
    with ScriptedServer(owned_by="ulm", props={"grammar": True}) as ulm:
        ulm.enqueue(Reply([_missing_anchor(task)]))
        done = cb("bench", "edits", "--base-url", ulm.base_url, "--tier", "literal", "--limit", "1",
                  "--grammar", "off", "--retries", "0")
        assert done.returncode == 0, done.stderr
        assert len(ulm.requests) == 1 and "grammar" not in ulm.requests[0]["body"]
    lines = done.stdout.splitlines()
    assert lines[0].endswith("; grammar off (edits asked for: plain), retries 0")
    assert lines[1].split()[:7] == ["tier", "tasks", "well-formed", "applicable", "correct", "escapes", "repaired"]
    assert lines[2].split()[:7] == ["literal", "1", "100.0%", "0.0%", "0.0%", "0", "0"]
    bad = cb("bench", "edits", "--base-url", "http://127.0.0.1:9/v1", "--retries", "-1")
    assert bad.returncode == 1 and bad.stderr.strip() == "cb: edit_retries must be at least 0, not -1"
