"""How the `ulm` commands show `ulm.progress` stages: a rich bar per stage on a terminal (stderr), one plain
line per stage start and end otherwise (a pipe, CI), so long first-time steps never look like a hang."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from ulm import progress


@contextlib.contextmanager
def shown() -> Iterator[None]:
    """Show every stage reported while the block runs."""
    if not sys.stderr.isatty():
        with progress.listen(_PlainLines()):
            yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    tasks: dict[str, TaskID] = {}

    def update(stage: progress.Stage) -> None:
        if stage.name not in tasks:
            tasks[stage.name] = bars.add_task(stage.name, total=stage.total, amount="")
        bars.update(tasks[stage.name], completed=stage.done, total=stage.total, amount=stage.amount)
        if stage.finished:
            bars.remove_task(tasks.pop(stage.name))

    with bars, progress.listen(update):
        yield


class _PlainLines:
    """One line when a stage starts and one when it ends, with its duration."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def __call__(self, stage: progress.Stage) -> None:
        if stage.name not in self.started:
            self.started[stage.name] = time.monotonic()
            print(f"{stage.name} …", file=sys.stderr, flush=True)
        if stage.finished:
            took = time.monotonic() - self.started.pop(stage.name)
            print(f"{stage.name}: done in {took:.1f} s", file=sys.stderr, flush=True)
