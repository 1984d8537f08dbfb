"""`cb bench edits` end to end against a real `ulm serve` on the seeded tiny random model: the path works
(prompt, streamed answer with the server's usage, parse, plan, apply, check); the answers are garbage, so
this asserts the scoring, not the quality.

Run: .venv/bin/python -m pytest tests/cb/editbench/test_against_ulm_serve.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cb.editbench import corpus

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_few_tasks_run_through_the_real_path_and_are_scored_consistently(ulm_server: str) -> None:
    # the server caps answers at 64 tokens: asking for no more leaves the prompt room for the whole files
    done = subprocess.run([sys.executable, "-m", "cb", "bench", "edits", "--base-url", ulm_server, "--split", "dev",
                           "--limit", "4", "--max-tokens", "64", "--json"], capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, env={**os.environ})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    tasks = data["tasks"]
    assert [t["id"] for t in tasks] == [t.id for t in corpus.select(corpus.load(), "dev", (), 4)]
    for t in tasks:
        assert t["tokens_reported"] and t["prompt_tokens"] > 300  # the instructions and a whole file
        rounds = 1 + t["repaired"]  # a garbage answer proposes no edit, which the repair round sends back
        assert rounds <= 2 and (t["repaired"] == 0) == (t["first_answer"] == "")
        assert rounds <= t["completion_tokens"] <= 64 * rounds and t["finish_reason"] in ("stop", "length")
        assert t["answer"] and t["answer_seconds"] > 0 and t["seconds"] >= t["answer_seconds"]
        assert t["correct"] <= t["applicable"] <= t["well_formed"] and not t["escaped"]
        assert t["correct"] or t["reason"]
        assert not t["cuts"]
    total = data["tiers"][-1]
    assert total["tier"] == "total" and total["tasks"] == 4 and total["escaped"] == 0
    for key in ("well_formed", "applicable", "correct"):
        assert total[key] == sum(t[key] for t in tasks)
        assert sum(row[key] for row in data["tiers"][:-1] if row["tier"] != "single-file") == total[key]
    assert len(done.stderr.splitlines()) == 4  # one plain progress line per task
