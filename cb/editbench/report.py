"""What `cb bench edits` prints: the per-tier table (rich on a terminal, aligned plain text in a pipe), the
JSON (per task and per tier), the corpus table (`--list`), and the progress of a run on stderr (a rich bar
on a terminal, one plain line per task otherwise).

Every table names the split its figures come from in its title.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cb.editbench.score import TaskResult, TierRow
from cb.editbench.tasks import SPLITS, Task
from cb.render import Out, is_terminal
from cb.sanitize import sanitize

COLUMNS = ("tier", "tasks", "well-formed", "applicable", "correct", "escapes", "repaired", "median s",
           "median prompt tok", "median completion tok")


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row_cells(row: TierRow) -> list[str]:
    return [row.tier, str(row.tasks), f"{row.pct(row.well_formed):.1f}%", f"{row.pct(row.applicable):.1f}%",
            f"{row.pct(row.correct):.1f}%", str(row.escaped), str(row.repaired), _number(row.median_seconds, 1),
            _number(row.median_prompt_tokens), _number(row.median_completion_tokens)]


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A title line and left-aligned first column, right-aligned others."""
    widths = [max(len(columns[i]), *(len(r[i]) for r in rows)) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                              strict=True)))

    return "\n".join([title, line(columns), *(line(r) for r in rows)])


def show_table(out: Out, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """The table on stdout: rich on a terminal, plain text otherwise."""
    title = sanitize(title)
    if not out.rich:
        out.stdout.write(plain_table(title, columns, rows) + "\n")
        out.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for cells in rows:
        table.add_row(*(Text(c) for c in cells), style="bold" if cells[0] in ("total", "single-file") else None)
    out.console.print(table)


def title(split: str, shown: int, meta: Mapping[str, Any]) -> str:
    return (f"cb bench edits: split {split}, {shown} tasks; model {meta['model']} at {meta['base_url']}; "
            f"max_tokens {meta['max_tokens']}, temperature {meta['temperature']:g}; grammar {meta['grammar']} "
            f"(edits asked for: {meta['edit_mode']}), retries {meta['retries']}")


def results_table(out: Out, split: str, rows: Sequence[TierRow], meta: Mapping[str, Any]) -> None:
    show_table(out, title(split, rows[-1].tasks, meta), COLUMNS, [row_cells(r) for r in rows])


def corpus_table(out: Out, counts: Mapping[str, Mapping[str, int]], fingerprint: str) -> None:
    """`--list`: tasks per tier and split."""
    rows = [[tier, *(str(c[s]) for s in SPLITS), str(sum(c.values()))] for tier, c in counts.items()]
    totals = [sum(c[s] for c in counts.values()) for s in SPLITS]
    rows.append(["total", *(str(n) for n in totals), str(sum(totals))])
    show_table(out, f"cb bench edits corpus {fingerprint}: tasks per tier and split", ("tier", *SPLITS, "all"), rows)


def as_json(split: str, rows: Sequence[TierRow], results: Sequence[TaskResult],
            meta: Mapping[str, Any]) -> dict[str, Any]:
    return {"split": split, **meta, "tiers": [r.as_dict() for r in rows], "tasks": [r.as_dict() for r in results]}


class Progress:
    """Progress of a run on stderr; `start(i, task)` before each task, `step(i, result)` after. A context
    manager."""

    def __init__(self, out: Out, total: int) -> None:
        self.out = out
        self.total = total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if is_terminal(self.out.stderr):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("edits"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}", markup=False), console=self.out.err_console,
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task("", total=self.total)
        return self

    def start(self, i: int, task: Task) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=i - 1, description=f"{task.id} …")

    def step(self, i: int, result: TaskResult) -> None:
        verdict = sanitize("correct" if result.correct else result.reason or "wrong")
        if self._bar is not None:
            self._bar.update(self._task, completed=i, description=f"{result.id}: {verdict[:60]}")
        else:
            self.out.stderr.write(f"[{i}/{self.total}] {result.id}: {verdict} ({result.seconds:.1f} s)\n")
            self.out.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
