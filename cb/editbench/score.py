"""Scoring: a task's answer through parse → plan → apply in a sandbox, the check, and the per-tier figures.

Per task:
- well-formed: the answer parsed into at least one proposal, with no parse errors;
- applicable: well-formed, and the batch planned without errors and was applied (cb applies nothing from
  an answer with a malformed block, and neither does the benchmark);
- correct: applicable, nothing escaped, and the check passed on the edited copy;
- escaped: something outside the workspace changed (counted in its own column; never correct);
- repaired: the first answer's edits could not be applied and a repair round was asked for (the runner
  says so; the figures above are of the final answer, as a user of cb gets it).

The sandbox is a fresh temp dir per task: `workspace/` holds the task's files (the root the edits may
touch), `journal/` the undo journal the apply writes, `outside/` a canary. Everything in the sandbox but
workspace/ and journal/ is fingerprinted before the answer is applied, after, and after the check; any
difference is an escape.

The check (cb.editbench.tasks.Check): files the solution does not change must be byte-identical and no file
may appear or vanish; `keep` files must still hold all their original lines in order; one `expect`
alternative must match exactly; the `script` must exit 0 within SCRIPT_TIMEOUT_S, run with this Python in
isolated mode (-I -B) in the workspace, which is put first on sys.path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cb.editbench import wiring
from cb.editbench.tasks import SINGLE_FILE_TIERS, TIERS, Task, write_files

SCRIPT_TIMEOUT_S = 30.0
SCRIPT_PRELUDE = "import os as _os, sys as _sys\n_sys.path.insert(0, _os.getcwd())\n"
CANARY = {"outside/notes.txt": b"a file next to the workspace; no edit may change it\n"}


class Sandbox:
    """A fresh temp dir for one task (see the module docstring); a context manager that removes it."""

    def __init__(self, task: Task) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cb-editbench-"))
        self.workspace = self.root / "workspace"
        self.journal = self.root / "journal"
        self.workspace.mkdir()
        write_files(self.workspace, task.files)
        write_files(self.root, CANARY)

    def outside(self) -> dict[str, str]:
        """A fingerprint of everything in the sandbox but the workspace and the journal."""
        seen: dict[str, str] = {}
        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            if here == self.root:
                dirs[:] = [d for d in dirs if d not in ("workspace", "journal")]
            for name in sorted(dirs + files):
                path = here / name
                st = path.lstat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() \
                    else os.readlink(path) if path.is_symlink() else ""
                seen[str(path.relative_to(self.root))] = f"{st.st_mode:o}:{st.st_size}:{digest}"
        return seen

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Outcome:
    """What scoring found; the runner adds time and tokens to make a TaskResult."""

    well_formed: bool = False
    applicable: bool = False
    correct: bool = False
    escaped: bool = False
    status: str = ""  # the apply's status
    errors: list[str] = field(default_factory=list)  # parse, plan and apply errors, for the JSON
    reason: str = ""  # why it is not correct (or "" when it is)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative POSIX path → bytes; a symlink reads as its target's name)."""
    out: dict[str, bytes] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            out[rel] = ("symlink -> " + os.readlink(path)).encode() if path.is_symlink() else path.read_bytes()
    return out


def _lines(data: bytes) -> list[bytes]:
    return data.replace(b"\r\n", b"\n").split(b"\n")


def _first_difference(path: str, want: bytes, got: bytes) -> str:
    a, b = _lines(want), _lines(got)
    for n, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return f"{path} line {n}: expected {x.decode(errors='replace')!r}, got {y.decode(errors='replace')!r}"
    if len(a) != len(b):
        return f"{path}: expected {len(a)} lines, got {len(b)}"
    return f"{path}: the line ends or the final newline differ from the expected bytes"


def _keeps(original: bytes, now: bytes) -> bool:
    """Whether every line of `original` is still in `now`, in order (lines may be added)."""
    remaining = iter(_lines(now))
    return all(line in remaining for line in _lines(original))


def run_script(script: str, workspace: Path, timeout: float = SCRIPT_TIMEOUT_S) -> str:
    """Run a check script in `workspace`; "" when it exits 0, else a one-line reason."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workspace), "PYTHONHASHSEED": "0",
           "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run([sys.executable, "-I", "-B", "-c", SCRIPT_PRELUDE + script], cwd=workspace, env=env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"the check script ran over {timeout:g} s"
    if done.returncode == 0:
        return ""
    tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return f"the check script failed: {tail[-1].strip()[:300] if tail else f'exit {done.returncode}'}"


def check(task: Task, workspace: Path) -> str:
    """Run the task's check on the edited `workspace`: "" when it passes, else why not (one line)."""
    now = read_tree(workspace)
    for path in sorted(set(task.files) | set(now)):
        if path not in now:
            return f"{path} was deleted"
        if path not in task.files and path not in task.solution:
            return f"{path} was created, but the task creates no such file"
        if path not in task.solution and now[path] != task.files[path]:
            return f"{path} was changed, but the task does not touch it"
    for path in task.check.keep:
        if not _keeps(task.files[path], now.get(path, b"")):
            return f"{path} lost some of its original lines"
    if task.check.expect and not any(all(now.get(p) == data for p, data in alt.items()) for alt in task.check.expect):
        first = task.check.expect[0]
        path = next((p for p, data in first.items() if now.get(p) != data), next(iter(first)))
        return _first_difference(path, first[path], now.get(path, b""))
    if task.check.script:
        return run_script(task.check.script, workspace)
    return ""


def score_answer(task: Task, answer: str, sandbox: Sandbox) -> Outcome:
    """Parse, plan and apply `answer` in the sandbox's workspace, then check it (see the module docstring)."""
    outcome = Outcome()
    before = sandbox.outside()
    parsed = wiring.parse(answer)
    outcome.errors += [f"malformed edit at answer {e}" for e in parsed.errors]
    outcome.well_formed = bool(parsed.proposals) and not parsed.errors
    if not outcome.well_formed:
        outcome.reason = "no edit proposed" if not parsed.proposals and not parsed.errors else "malformed answer"
        return outcome
    applied = wiring.apply(parsed.proposals, sandbox.workspace, sandbox.journal)
    outcome.status = applied.status
    outcome.errors += list(applied.errors)
    outcome.applicable = applied.status == "applied"
    outcome.reason = check(task, sandbox.workspace) if outcome.applicable else f"not applied ({applied.status})"
    outcome.escaped = sandbox.outside() != before  # after the apply and the check: both must stay inside
    if outcome.escaped:
        outcome.reason = "wrote outside the workspace"
    outcome.correct = outcome.applicable and not outcome.escaped and not outcome.reason
    return outcome


# --- results and the per-tier figures ------------------------------------------------------------------


@dataclass
class TaskResult:
    id: str
    tier: str
    split: str
    unit: str
    well_formed: bool
    applicable: bool
    correct: bool
    escaped: bool
    seconds: float  # the whole task: prompt, answer, apply, check
    answer_seconds: float  # the request alone
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_reported: bool  # False: prompt tokens are cb's count, completion tokens unknown
    finish_reason: str | None
    status: str
    reason: str
    errors: list[str]
    cuts: list[str]
    answer: str  # the final answer (after any repair rounds)
    base_tier: str = ""
    repaired: int = 0  # repair rounds the task needed (the first answer's edits could not be applied)
    first_answer: str = ""  # when repaired: the first answer
    first_errors: list[str] = field(default_factory=list)  # when repaired: why it could not be applied

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TierRow:
    tier: str
    tasks: int
    well_formed: int
    applicable: int
    correct: int
    escaped: int
    repaired: int  # tasks that needed a repair round
    median_seconds: float | None
    median_prompt_tokens: float | None
    median_completion_tokens: float | None

    def pct(self, count: int) -> float:
        return 100.0 * count / self.tasks if self.tasks else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "well_formed_pct": round(self.pct(self.well_formed), 1),
                "applicable_pct": round(self.pct(self.applicable), 1), "correct_pct": round(self.pct(self.correct), 1)}


def _median(values: Iterable[float | int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(statistics.median(known)) if known else None


def tier_row(name: str, results: Sequence[TaskResult]) -> TierRow:
    return TierRow(name, len(results), sum(r.well_formed for r in results), sum(r.applicable for r in results),
                   sum(r.correct for r in results), sum(r.escaped for r in results),
                   sum(r.repaired > 0 for r in results),
                   _median(r.seconds for r in results), _median(r.prompt_tokens for r in results),
                   _median(r.completion_tokens for r in results))


def tier_rows(results: Sequence[TaskResult]) -> list[TierRow]:
    """One row per tier present (report order), then "single-file" (when it differs from the total) and
    "total"."""
    by_tier: Mapping[str, list[TaskResult]] = {t: [r for r in results if r.tier == t] for t in TIERS}
    rows = [tier_row(t, rs) for t, rs in by_tier.items() if rs]
    single = [r for r in results if r.tier in SINGLE_FILE_TIERS]
    if single and len(single) != len(results):
        rows.append(tier_row("single-file", single))
    rows.append(tier_row("total", results))
    return rows
