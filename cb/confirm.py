"""cb's interactive confirmation of an edit batch: each file's diff, then yes / no / all / edit / quit.

`Confirmer(...)` is a `tools.Confirm` callable: given a checked `tools.Plan` it shows, per file, the
summary, any warning and the diff (syntax-highlighted with rich when the output is a terminal; the diff
text comes from `tools.preview`, where control characters and escape sequences are already made
visible, so nothing in a proposal can move the cursor or hide a line), then asks:

    y  apply this file's change        n  skip it           a  this one and all the rest
    e  edit the proposal in $VISUAL / $EDITOR, then see the new diff and answer again
    q  apply nothing (also Ctrl-D / Ctrl-C)

The default (Enter) is No. A change with a warning (it removes more than half of a file, or holds
placeholder text such as "rest of code") needs a second, explicit yes whose default is also No, even
after "a". Without a terminal to ask on (stdin and /dev/tty both unavailable) it refuses everything and
says so. It returns the proposals to apply; `tools.apply` re-checks the files before writing.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from tools import EditProposal, FileChange, Plan, RunProposal, parse_proposals, plan_batch, render, visible

CHOICES = "[y]es [n]o [a]ll [e]dit [q]uit"


class Terminal:
    """Where questions are asked: a text stream to read answers from and one to write prompts to."""

    def __init__(self, stdin: IO[str], stdout: IO[str], owned: bool = False) -> None:
        self.stdin, self.stdout, self.owned = stdin, stdout, owned

    def ask(self, prompt: str) -> str | None:
        """Print `prompt`, read one line; None at end of input."""
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        return line.strip().lower() if line else None

    def close(self) -> None:
        if self.owned:
            for stream in (self.stdin, self.stdout):
                with contextlib.suppress(OSError):
                    stream.close()


def open_terminal() -> Terminal | None:
    """The user's terminal: stdin/stderr when stdin is a TTY, else /dev/tty (for `... | cb apply -`), else None."""
    if sys.stdin.isatty():
        return Terminal(sys.stdin, sys.stderr)
    try:
        # Two streams: a text stream opened "r+" on a tty fails (it is not seekable).
        tty_in = open("/dev/tty", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by Terminal.close
    except OSError:
        return None
    try:
        tty_out = open("/dev/tty", "w", encoding="utf-8")  # noqa: SIM115 - closed by Terminal.close
    except OSError:
        tty_in.close()
        return None
    return Terminal(tty_in, tty_out, owned=True)


def run_editor(text: str) -> str:
    """Let the user edit `text` in $VISUAL / $EDITOR (default vi) and return the result."""
    command = shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
    with tempfile.NamedTemporaryFile("w+", suffix=".cb-edit.txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        name = f.name
    try:
        stdin: Any = None
        if not sys.stdin.isatty():
            with contextlib.suppress(OSError):
                stdin = open("/dev/tty")  # noqa: SIM115 - closed below
        try:
            subprocess.run([*command, name], stdin=stdin, check=False)
        finally:
            if stdin is not None:
                stdin.close()
        return Path(name).read_text(encoding="utf-8")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def show_change(change: FileChange, console: Any) -> None:
    """Print one file's header, summary, warnings and diff (already made visible by tools.preview)."""
    from rich.syntax import Syntax
    from rich.text import Text

    console.print(Text(f"── {visible(change.path)}: {change.summary}", style="bold"))
    for warning in change.warnings:
        console.print(Text(f"⚠ warning: {warning}", style="bold red"))
    if change.diff:
        console.print(Syntax(change.diff.rstrip("\n"), "diff", theme="ansi_dark", background_color="default",
                             word_wrap=True))


def show_plan(plan: Plan, console: Any) -> None:
    """Print every change of a plan, its errors and notes (for --dry-run and for errors)."""
    from rich.text import Text

    for change in plan.changes:
        show_change(change, console)
    for run in plan.runs:
        console.print(Text(f"── run in tab {visible(run.tab or '(default)')}: {visible(run.command)}", style="bold"))
    for note in plan.notes:
        console.print(Text(f"note: {visible(note)}"))
    for error in plan.errors:
        console.print(Text(f"✗ {visible(error)}", style="red"))


class Confirmer:
    """The interactive `tools.Confirm` (see the module docstring)."""

    def __init__(self, console: Any, terminal: Terminal | None, root: Path,
                 editor: Callable[[str], str] = run_editor) -> None:
        self.console, self.terminal, self.root, self.editor = console, terminal, root, editor

    def __call__(self, plan: Plan) -> Sequence[EditProposal]:
        from rich.text import Text

        if self.terminal is None:
            show_plan(plan, self.console)
            self.console.print(Text("no terminal to confirm on: nothing applied (use --yes to apply without asking)"))
            return ()
        accepted: list[EditProposal] = []
        all_rest = False
        queue = list(plan.changes)
        while queue:
            change = queue.pop(0)
            show_change(change, self.console)
            answer = "y" if all_rest else self._ask(f"Apply to {visible(change.path)}? {CHOICES} (n): ")
            if answer in ("q", None):
                return ()
            if answer == "e":
                queue[:0] = self._edited(change)
                continue
            if answer in ("y", "a") and self._warned_ok(change):
                accepted.extend(change.proposals)
            all_rest = all_rest or answer == "a"
        return accepted

    def _ask(self, prompt: str) -> str | None:
        assert self.terminal is not None
        while True:
            try:
                answer = self.terminal.ask(prompt)
            except KeyboardInterrupt:
                return None
            if answer is None:
                return None
            answer = (answer or "n")[:1]
            if answer in "ynaeq":
                return answer
            self.terminal.stdout.write(f"please answer one of: {CHOICES}\n")

    def _warned_ok(self, change: FileChange) -> bool:
        if not change.warnings:
            return True
        assert self.terminal is not None
        try:
            answer = self.terminal.ask(f"⚠ {visible(change.path)}: {'; '.join(change.warnings)}. Apply anyway? [y/N]: ")
        except KeyboardInterrupt:
            return False
        return answer in ("y", "yes")

    def _edited(self, change: FileChange) -> list[FileChange]:
        """Edit the change's proposals as blocks; returns the re-planned change(s) to ask about, or the original."""
        from rich.text import Text

        try:
            edited = self.editor(editable(change))
        except OSError as exc:
            self.console.print(Text(f"could not run the editor ({exc}); answer again", style="red"))
            return [change]
        try:
            return replan_edited(edited, self.root)
        except EditRejected as exc:
            self.console.print(Text(f"{visible(str(exc))}; answer again", style="red"))
            return [change]


class EditRejected(ValueError):
    """An edited proposal that cannot be used; the message says why, in one line."""


def editable(change: FileChange) -> str:
    """A change's proposals as the blocks a person edits ($EDITOR in the terminal, a text box in cb web)."""
    return "\n\n".join(render(p) for p in change.proposals) + "\n"


def replan_edited(text: str, root: Path) -> list[FileChange]:
    """The changes the edited blocks `text` make, checked against the files now; EditRejected when unusable."""
    parsed = parse_proposals(text)
    edits = [p for p in parsed.proposals if not isinstance(p, RunProposal)]
    if parsed.errors or not edits:
        reason = "; ".join(str(e) for e in parsed.errors) or "no edit blocks left"
        raise EditRejected(f"the edited proposal was not used ({reason})")
    replanned = plan_batch(edits, root)
    if replanned.errors:
        raise EditRejected("the edited proposal was not used: " + "; ".join(replanned.errors))
    return list(replanned.changes)
