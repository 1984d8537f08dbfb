"""What happens to the edits an answer proposes: parse, show the diff, confirm, apply (through `tools`).

- `--yes` (one-shot): file edits are applied without asking, unless a change carries a warning (a large
  deletion, placeholder text): then nothing is applied. Shell commands (`<run>`) are never run this way.
- a terminal: the diff is shown and cb's interactive confirmation (`cb.confirm`) decides; proposed shell
  commands are each asked about and then sent to their agentshell tab.
- no terminal and no `--yes`: the diff is printed and the batch is left for `cb apply` (the answer is saved
  in the session dir); the exit status says so (EXIT_EDITS_PENDING).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cb import paths
from cb.exits import EXIT_EDITS_FAILED, EXIT_EDITS_PENDING, EXIT_OK
from cb.render import Out
from cb.session import Session

if TYPE_CHECKING:
    from tools import ApplyResult, Confirm, Proposal


@dataclass
class EditOutcome:
    """The fate of one answer's proposals, for the exit status and --json."""

    edits: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    applied: bool = False
    written: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    diff: str = ""
    saved: str = ""
    exit_code: int = EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"edits": self.edits, "runs": self.runs, "applied": self.applied, "written": self.written,
                "errors": self.errors, "diff": self.diff, "saved_answer": self.saved or None}


def _show_diff(out: Out, diff: str) -> None:
    if not diff:
        return
    if out.rich:
        from rich.syntax import Syntax

        out.console.print(Syntax(diff, "diff", theme=out.code_theme, background_color="default"))
    else:
        out.stdout.write(diff if diff.endswith("\n") else diff + "\n")
        out.stdout.flush()


def save_answer(session: Session, answer: str) -> Path:
    """Keep the answer where `cb apply` can find it; returns the path."""
    path = session.dir / "last_answer.md"
    paths.ensure_dir(path.parent)
    path.write_text(answer, encoding="utf-8")
    return path


def handle_edits(answer: str, session: Session, out: Out, *, yes: bool, interactive: bool | None = None,
                 quiet: bool = False) -> EditOutcome:
    """Parse `answer` for proposals and apply, ask, or leave them, as the module docstring says."""
    from tools import describe, parse_proposals

    parsed = parse_proposals(answer)
    result = EditOutcome(edits=[describe(p) for p in parsed.proposals if p.kind != "run"],
                         runs=[describe(p) for p in parsed.proposals if p.kind == "run"])
    if not parsed.proposals and not parsed.errors:
        return result
    from tools import plan_batch

    if interactive is None:
        interactive = _can_ask()
    say = (lambda _text: None) if quiet else out.info
    result.errors = [f"malformed edit at answer {e}" for e in parsed.errors]
    edits = [p for p in parsed.proposals if p.kind != "run"]
    root = Path(session.project)
    if edits:
        plan = plan_batch(edits, root)
        result.diff = "".join(c.diff for c in plan.changes)
        result.errors += list(plan.errors)
        if not quiet and (yes or not interactive or plan.errors):
            _show_diff(out, result.diff)
            if yes or not interactive:
                for c in plan.changes:
                    say(f"{c.path}: {c.summary}")
                for w in plan.warnings:
                    out.info(f"warning: {w}", style="bold yellow")
    if result.errors:
        for e in result.errors:
            out.error(e)
        result.exit_code = EXIT_EDITS_FAILED
    elif edits and (yes or interactive):
        applied, result.exit_code = apply_edits(edits, root, out.console, yes=yes)
        result.applied = applied.status == "applied"
        result.written = list(applied.written)
        result.errors += list(applied.errors)
        say(applied.message())
        if applied.status == "declined" and yes and plan.warnings:
            out.info("not applied with --yes because of the warning above; review it with: cb apply "
                     f"{save_answer(session, answer)}")
    elif edits:
        result.saved = str(save_answer(session, answer))
        say(f"edits not applied (no terminal, no --yes); apply them with: cb apply {result.saved}")
        result.exit_code = EXIT_EDITS_PENDING
    _handle_runs(parsed.proposals, out, interactive=interactive and not yes, quiet=quiet)
    return result


def apply_edits(edits: Sequence[Proposal], root: Path, console: Any, *, yes: bool,
                force: bool = False, confirm: Confirm | None = None) -> tuple[ApplyResult, int]:
    """Apply a batch the one way `cb ask`, `cb apply` and `cb web` do; returns the result and its exit code.

    With `yes`, nothing is asked: every change applies, unless one carries a warning (then nothing does,
    or, with `force`, everything). With a `confirm` of the caller's (cb web: the choices made on the page),
    it decides. Otherwise cb.confirm asks on the user's terminal (no terminal: nothing applies). Applied
    batches go to the undo journal.
    """
    from tools import Journal, accept_all, accept_unwarned, apply_batch

    terminal = None
    if yes:
        confirm = accept_all if force else accept_unwarned
    elif confirm is None:
        from cb.confirm import Confirmer, open_terminal

        terminal = open_terminal()
        confirm = Confirmer(console, terminal, root)
    try:
        result = apply_batch(edits, root, journal=Journal(paths.undo_dir()), confirm=confirm)
    finally:
        if terminal is not None:
            terminal.close()
    return result, {"applied": EXIT_OK, "nothing": EXIT_OK, "declined": EXIT_EDITS_PENDING}.get(
        result.status, EXIT_EDITS_FAILED)


def _can_ask() -> bool:
    """Whether a person can be asked: stdout is a terminal, and so is stdin or the controlling tty."""
    if not sys.stdout.isatty():
        return False
    if sys.stdin.isatty():
        return True
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _handle_runs(proposals: Any, out: Out, *, interactive: bool, quiet: bool) -> None:
    """Ask about each proposed shell command (terminal only) and send the accepted ones to their tab."""
    from cb.sanitize import sanitize

    runs = [p for p in proposals if p.kind == "run"]
    for p in runs:
        shown = sanitize(p.command)
        tab = p.tab or "cb"
        if not interactive:
            if not quiet:
                out.info(f"proposed command (not run): [{tab}] {shown}")
            continue
        from cb.confirm import open_terminal

        terminal = open_terminal()
        try:
            answer = terminal.ask(f"run in tab {sanitize(tab)!r}: {shown}  [y/N] ") if terminal else None
        except KeyboardInterrupt:
            answer = None
        finally:
            if terminal:
                terminal.close()
        if (answer or "").strip().lower() not in ("y", "yes"):
            out.info("not run")
            continue
        from agentshell.protocol import AgentshellError

        try:
            send_to_tab(tab, p.command)
            out.info(f"sent to tab {tab}")
        except AgentshellError as exc:
            out.error(str(exc))


def send_to_tab(tab: str, command: str) -> None:
    """Run a confirmed command in agentshell tab `tab`: typed into it, or in a new tab of that name when there
    is none (the daemon is started if needed). Raises AgentshellError."""
    from agentshell.client import Client
    from agentshell.protocol import NoSuchTab

    with Client.connect(timeout=10.0, client_name="cb") as sh:
        try:
            sh.run_command(tab, command)
        except NoSuchTab:
            sh.run(command, name=tab)


def undo_last(session: Session) -> str:
    """Undo the newest applied batch (the REPL's /undo); one line saying what happened."""
    from tools import Journal

    return Journal(paths.undo_dir()).undo_last().message()
