"""The scorer can be trusted: scripted answers (right, wrong, malformed, one that writes outside the
workspace, one stale, prose) go through the real runner, cb's client and a scripted OpenAI-compatible
server, the real parse → plan → apply and the real checks, and give exactly the expected per-tier numbers;
escapes are caught; a file changed after the prompt makes the edit stale and nothing is written; the
extra-body hook reaches the server; server errors are per task until the server is gone.

Run: .venv/bin/python -m pytest tests/cb/editbench/test_score.py -q
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cb import config
from cb.editbench import corpus, run, wiring
from cb.editbench.score import CANARY, Sandbox, TaskResult, check, score_answer, tier_rows
from cb.editbench.tasks import Check, Task
from tests.cb.scripted_server import Reply, ScriptedServer

TIERS = ("literal", "rename", "two-file")
KINDS = ("right", "wrong", "malformed", "outside", "stale", "prose")


def answer(kind: str, task: Task) -> str:
    first = task.open[0]
    if kind == "right":
        return wiring.reference_answer(task)
    if kind == "wrong":  # well-formed and applicable, but not what was asked
        return wiring.answer_for(task.files, {first: b"# not what was asked\n" + task.files[first]})
    if kind == "malformed":  # cut off inside its first block, as at max_tokens
        right = wiring.reference_answer(task)
        return right[: right.index("\n") + 1] + "partial"
    if kind == "outside":  # a correct edit of a file next to the workspace, by relative and absolute path
        outside = {"../outside/notes.txt": b"overwritten\n", "/etc/hostname": b"overwritten\n"}
        return wiring.answer_for({p: CANARY["outside/notes.txt"] for p in outside}, outside)
    if kind == "stale":  # right, but made against an older version of the file
        older = {p: data + b"# an older line\n" for p, data in task.files.items()}
        return wiring.answer_for(older, task.solution)
    return "I would rename it and update the callers; let me know if you want the edit."


def connect(server: ScriptedServer) -> wiring.Connection:
    return run.connect(config.load({"base_url": server.base_url}))


def test_scripted_answers_give_exactly_the_expected_numbers_per_tier(scripted: ScriptedServer) -> None:
    tasks = [t for tier in TIERS for t in corpus.select(corpus.load(), "all", (tier,))[: len(KINDS)]]
    assert len(tasks) == len(TIERS) * len(KINDS)
    kinds = [KINDS[i % len(KINDS)] for i in range(len(tasks))]
    scripted.enqueue(*(Reply([answer(k, t)], usage={"prompt_tokens": 700 + i, "completion_tokens": 40 + i})
                       for i, (k, t) in enumerate(zip(kinds, tasks, strict=True))))
    conn = connect(scripted)
    try:
        results = run.run_tasks(tasks, conn, max_tokens=256, temperature=0.0)
    finally:
        conn.close()
    by_kind = {(k, r.tier): r for k, r in zip(kinds, results, strict=True)}
    for tier in TIERS:
        right, wrong = by_kind["right", tier], by_kind["wrong", tier]
        assert (right.well_formed, right.applicable, right.correct, right.reason) == (True, True, True, "")
        assert (wrong.well_formed, wrong.applicable, wrong.correct) == (True, True, False) and wrong.reason
        assert by_kind["malformed", tier].errors and not by_kind["malformed", tier].well_formed
        outside = by_kind["outside", tier]
        assert outside.well_formed and outside.status == "refused" and not outside.escaped
        assert any("outside the workspace" in e for e in outside.errors)
        stale = by_kind["stale", tier]
        assert stale.status == "refused" and any("changed since the model saw it" in e for e in stale.errors)
        assert by_kind["prose", tier].reason == "no edit proposed"
    rows = {r.tier: r for r in tier_rows(results)}
    assert list(rows) == [*TIERS, "single-file", "total"]
    for tier in TIERS:
        row = rows[tier]
        assert (row.tasks, row.well_formed, row.applicable, row.correct, row.escaped) == (6, 4, 2, 1, 0)
        assert row.as_dict()["correct_pct"] == 16.7 and row.as_dict()["applicable_pct"] == 33.3
    assert (rows["total"].tasks, rows["total"].well_formed, rows["total"].applicable, rows["total"].correct) == \
        (18, 12, 6, 3)
    assert (rows["single-file"].tasks, rows["single-file"].correct) == (12, 2)
    assert rows["total"].median_prompt_tokens == 708.5 and rows["total"].median_completion_tokens == 48.5
    assert all(r.tokens_reported for r in results)
    # what was sent: cb's prompt with the task's file, the request as the user message, no extra fields
    first = scripted.requests[0]["body"]
    assert first["messages"][-1] == {"role": "user", "content": tasks[0].request}
    assert f'<file path="{tasks[0].open[0]}" version="' in first["messages"][0]["content"]
    assert first["temperature"] == 0.0 and "grammar" not in first


def test_a_write_outside_the_workspace_is_an_escape_and_never_correct(tmp_path: Path) -> None:
    base = corpus.select(corpus.load(), "all", ("rename",))[0]
    sneaky = replace(base, check=Check(base.check.expect, 'open("../outside/notes.txt", "a").write("x")'))
    with Sandbox(sneaky) as box:
        outcome = score_answer(sneaky, wiring.reference_answer(sneaky), box)
    assert outcome.applicable and outcome.escaped and not outcome.correct
    assert outcome.reason == "wrote outside the workspace"
    result = TaskResult(base.id, base.tier, base.split, base.unit, True, True, False, True, 1.0, 1.0, 1, 1, True,
                        "stop", "applied", outcome.reason, [], [], "")
    assert tier_rows([result])[-1].escaped == 1


def test_a_file_changed_after_the_prompt_makes_the_edit_stale_and_nothing_is_written() -> None:
    task = corpus.select(corpus.load(), "all", ("literal",))[0]
    path = task.open[0]
    with Sandbox(task) as box:
        answer_text = wiring.reference_answer(task)  # made from the files as the prompt showed them
        edited_meanwhile = task.files[path] + b"# saved by an editor meanwhile\n"
        (box.workspace / path).write_bytes(edited_meanwhile)
        outcome = score_answer(task, answer_text, box)
        assert (box.workspace / path).read_bytes() == edited_meanwhile
    assert outcome.well_formed and not outcome.applicable and outcome.status == "refused"
    assert "changed since the model saw it" in " ".join(outcome.errors)


def test_the_extra_body_hook_sees_the_open_files_and_its_fields_reach_the_server(scripted: ScriptedServer) -> None:
    task = corpus.select(corpus.load(), "all", ("two-file",))[0]
    seen: list[dict[str, bytes]] = []

    def hook(t: Task, files: Mapping[str, Path]) -> Mapping[str, Any]:
        seen.append({p: f.read_bytes() for p, f in files.items()})
        return {"grammar": f"root ::= {t.tier!r}", "response_format": {"type": "text"}}

    scripted.enqueue(Reply([wiring.reference_answer(task)]))
    conn = connect(scripted)
    try:
        [result] = run.run_tasks([task], conn, max_tokens=64, temperature=0.0, extra_body=hook)
    finally:
        conn.close()
    assert result.correct
    assert seen == [{p: task.files[p] for p in task.open}]
    body = scripted.requests[0]["body"]
    assert body["grammar"] == "root ::= 'two-file'" and body["response_format"] == {"type": "text"}


def test_a_server_error_fails_its_task_and_three_in_a_row_stop_the_run(scripted: ScriptedServer) -> None:
    tasks = corpus.select(corpus.load(), "dev", (), 5)
    scripted.enqueue(Reply(status=400, error="the prompt is too long"), Reply([wiring.reference_answer(tasks[1])]),
                     *(Reply(status=500, error="boom") for _ in range(3)))
    conn = connect(scripted)
    seen: list[str] = []
    started: list[tuple[int, str]] = []
    try:
        with pytest.raises(run.BenchError, match=r"3 server errors in a row.*boom"):
            run.run_tasks(tasks, conn, max_tokens=64, temperature=0.0, progress=lambda i, r: seen.append(r.reason),
                          starting=lambda i, t: started.append((i, t.id)))
    finally:
        conn.close()
    assert seen[0].startswith("server error: the server answered 400: the prompt is too long")
    assert seen[1] == "" and len(seen) == 4
    assert started == [(i, t.id) for i, t in enumerate(tasks, start=1)]


def test_connect_says_when_the_named_model_is_not_served(scripted: ScriptedServer) -> None:
    with pytest.raises(run.BenchError, match=r"model 'nope' is not served at .*; it serves: scripted"):
        run.connect(config.load({"base_url": scripted.base_url, "model": "nope"}))


def test_the_check_names_what_is_wrong() -> None:
    task = corpus.select(corpus.load(), "all", ("two-file",))[0]
    solved = dict(task.solution)
    with Sandbox(task) as box:
        for path, data in solved.items():
            (box.workspace / path).write_bytes(data)
        assert check(task, box.workspace) == ""
        (box.workspace / "new.py").write_bytes(b"x = 1\n")
        assert check(task, box.workspace) == "new.py was created, but the task creates no such file"
        (box.workspace / "new.py").unlink()
        first = next(iter(solved))
        (box.workspace / first).unlink()
        assert check(task, box.workspace) == f"{first} was deleted"
    literal = next(t for t in corpus.load() if t.tier == "literal" and t.check.expect)
    with Sandbox(literal) as box:
        path = literal.open[0]
        assert check(literal, box.workspace).startswith(f"{path} line ")
    keeper = next(t for t in corpus.load() if t.check.keep)
    with Sandbox(keeper) as box:
        path = keeper.check.keep[0]
        (box.workspace / path).write_bytes(keeper.solution[path].replace(b"\n", b"\n\n", 1)[3:])
        assert check(keeper, box.workspace) == f"{path} lost some of its original lines"
