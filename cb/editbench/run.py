"""The runner: each task through cb's real path against one OpenAI-compatible server, one at a time.

    conn = run.connect(settings)                      # the configured server, or the local ulm serve
    mode = wiring.edit_mode("auto", conn)             # grammar against ulm serve with grammar support
    results = run.run_tasks(tasks, conn, max_tokens=512, temperature=0.0, mode=mode, retries=1,
                            progress=on_each)

Per task: a fresh sandbox (cb.editbench.score.Sandbox) → how edits are asked for in `mode` (cb.exchange via
wiring.shape: the instructions, and for "grammar" the grammar of the task's open files) → cb's prompt for
the task's open files and request (cb.editbench.wiring.prompt) → `extra_body(task, files)`, more fields
merged into the request body (default none: `files` maps each open file's path to its copy in the
workspace) → the streamed answer with up to `retries` repair rounds, as cb ask gets it (wiring.ask) →
score_answer (parse, plan, apply, check) of the final answer. A task's seconds and tokens are those of all
its rounds; its result says whether it needed a repair, and what the first answer was and why it failed.

A server error on one task (a 400, a prompt too long), or a prompt that cannot fit the context, is that
task's failure, recorded with the message; the run stops with BenchError after MAX_SERVER_ERRORS server
errors in a row (the server is gone).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cb.editbench import wiring
from cb.editbench.score import Outcome, Sandbox, TaskResult, score_answer
from cb.editbench.tasks import Task

MAX_SERVER_ERRORS = 3

ExtraBody = Callable[[Task, Mapping[str, Path]], Mapping[str, Any]]


class BenchError(RuntimeError):
    """The benchmark cannot go on; str() is one line for the user."""


def no_extra(task: Task, files: Mapping[str, Path]) -> Mapping[str, Any]:
    """The default extra-body hook: plain requests."""
    return {}


def connect(settings: Any) -> wiring.Connection:
    """The backend for `settings` (cb's config, with the command line's flags), checked: a model named on
    the command line must be one the server serves."""
    conn = wiring.connect(settings)
    named = settings.source.get("model") != "default"
    if named and not conn.local:
        ids = [str(m["id"]) for m in conn.backend.models()]
        if ids and conn.backend.model not in ids:
            conn.close()
            raise BenchError(f"model {conn.backend.model!r} is not served at {conn.backend.base_url}; it serves: "
                             f"{', '.join(ids[:8])}{' …' if len(ids) > 8 else ''}")
    return conn


def run_task(task: Task, conn: wiring.Connection, *, max_tokens: int, temperature: float,
             extra_body: ExtraBody = no_extra, mode: str = "plain", retries: int = 0) -> TaskResult:
    """One task, start to end (see the module docstring); BackendError passes through."""
    start = time.perf_counter()
    with Sandbox(task) as box:
        shaped = wiring.shape(mode, box.workspace, task.open)
        built = wiring.prompt(box.workspace, task.open, task.request, count=conn.count,
                              context_length=conn.context_length, max_tokens=max_tokens,
                              instructions=shaped.instructions)
        extra = extra_body(task, {p: box.workspace / p for p in task.open})
        asked = time.perf_counter()
        answered = wiring.ask(conn, built, shaped, temperature=temperature, retries=retries, workspace=box.workspace,
                              extra=extra)
        answer_seconds = time.perf_counter() - asked
        outcome = score_answer(task, answered.text, box)
    dones = answered.rounds
    reported = bool(dones) and all(d.usage_reported for d in dones)
    prompt_tokens = sum(d.usage.prompt_tokens for d in dones) if reported else built.prompt_tokens
    completion_tokens = sum(d.usage.completion_tokens for d in dones) if reported else None
    first = answered.repairs[0] if answered.repairs else None
    return _result(task, outcome, time.perf_counter() - start, answer_seconds, prompt_tokens, completion_tokens,
                   reported, dones[-1].finish_reason if dones else None, list(built.cuts), answered.text,
                   repaired=len(answered.repairs), first_answer=first.answer if first else "",
                   first_errors=list(first.errors) if first else [])


def _result(task: Task, outcome: Outcome, seconds: float, answer_seconds: float, prompt_tokens: int | None,
            completion_tokens: int | None, reported: bool, finish: str | None, cuts: list[str],
            answer: str, repaired: int = 0, first_answer: str = "", first_errors: list[str] | None = None
            ) -> TaskResult:
    return TaskResult(task.id, task.tier, task.split, task.unit, outcome.well_formed, outcome.applicable,
                      outcome.correct, outcome.escaped, round(seconds, 3), round(answer_seconds, 3), prompt_tokens,
                      completion_tokens, reported, finish, outcome.status, outcome.reason, outcome.errors, cuts,
                      answer, task.base_tier, repaired, first_answer, first_errors or [])


def run_tasks(tasks: Sequence[Task], conn: wiring.Connection, *, max_tokens: int, temperature: float,
              extra_body: ExtraBody = no_extra, mode: str = "plain", retries: int = 0,
              starting: Callable[[int, Task], None] | None = None,
              progress: Callable[[int, TaskResult], None] | None = None) -> list[TaskResult]:
    """Every task in order; `starting(i, task)` before each and `progress(i, result)` after (i from 1)."""
    from cb.backend import BackendError
    from cb.context import ContextError

    results: list[TaskResult] = []
    failures_in_a_row = 0
    for i, task in enumerate(tasks, start=1):
        if starting is not None:
            starting(i, task)
        try:
            result = run_task(task, conn, max_tokens=max_tokens, temperature=temperature, extra_body=extra_body,
                              mode=mode, retries=retries)
            failures_in_a_row = 0
        except ContextError as exc:
            result = _result(task, Outcome(reason=f"the prompt does not fit: {exc}", errors=[str(exc)]), 0.0, 0.0,
                             None, None, False, None, [], "")
        except BackendError as exc:
            failures_in_a_row += 1
            if failures_in_a_row >= MAX_SERVER_ERRORS:
                raise BenchError(f"stopped after {failures_in_a_row} server errors in a row: {exc}") from None
            result = _result(task, Outcome(reason=f"server error: {exc}", errors=[str(exc)]), 0.0, 0.0, None, None,
                             False, None, [], "")
        results.append(result)
        if progress is not None:
            progress(i, result)
    return results
