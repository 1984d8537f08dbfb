"""`cb apply` and `cb undo`: apply the edits found in a saved model answer, and take back the last batch.

Thin commands over `tools` (parse → plan → confirm → atomic apply → undo journal in cb.paths.undo_dir())
and `cb.confirm` (the interactive yes / no / all / edit / quit). Exit codes are cb's (cb.exits):
0 applied (or nothing proposed), 1 unreadable input, 3 not applied (declined, or no terminal to ask on),
4 could not be applied (malformed block, stale file, refused path, write error).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cb.commands.common import fail
from cb.exits import EXIT_EDITS_FAILED, EXIT_OK

SourceArg = Annotated[str, typer.Argument(help="A file holding a model answer (edit blocks or tool-call JSON), "
                                               "or - to read it from stdin.", show_default=False, metavar="FILE|-")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (a change with a warning still "
                                                         "needs --force).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="With --yes: apply changes that carry a warning too "
                                                       "(half the file removed, placeholder text).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", "-n", help="Show the diffs and checks; write nothing.")]
RootOpt = Annotated[Path | None, typer.Option("--root", help="Workspace root: edits outside it are refused "
                                                             "[default: the current directory].", show_default=False)]


def apply(source: SourceArg, yes: YesOpt = False, force: ForceOpt = False, dry_run: DryRunOpt = False,
          root: RootOpt = None) -> None:
    """Apply the edits proposed in a saved model answer, after showing each diff and asking.

    \b
    The answer holds edit blocks (see README "Edits"), e.g.
      <replace path="app.py" version="3f9a1c2b" start="3" end="4">
      def area(r):
          return math.pi * r * r
      </replace>
    Each edit must name the version of the file it was made against; a file that changed since is
    refused. The whole batch applies or nothing does; `cb undo` takes it back.

    \b
    Examples:
      cb apply answer.txt               ask y/n/all/edit/quit per file
      cb apply answer.txt --dry-run     show diffs and problems only
      xclip -o | cb apply - --yes       apply what is on the clipboard without asking
    """
    from rich.console import Console

    from cb.confirm import show_plan
    from cb.edits import apply_edits
    from tools import parse_proposals, plan_batch, visible

    text = _read_source(source)
    workspace = (root or Path.cwd()).resolve()
    if not workspace.is_dir():
        fail(f"--root {workspace} is not a directory")
    console = Console(highlight=False)
    parsed = parse_proposals(text)
    if parsed.errors:
        for error in parsed.errors:
            console.print(f"✗ {visible(str(error))}", markup=False, style="red")
        fail(f"{len(parsed.errors)} malformed edit block(s); nothing applied", EXIT_EDITS_FAILED)
    runs = [p for p in parsed.proposals if p.kind == "run"]
    edits = [p for p in parsed.proposals if p.kind != "run"]
    for run in runs:
        console.print(f"skipped: run {visible(run.command)!r} (cb apply does not run commands; use the chat)",
                      markup=False)
    if not edits:
        console.print("no edits proposed", markup=False)
        raise typer.Exit(EXIT_OK)
    if dry_run:
        plan = plan_batch(edits, workspace)
        show_plan(plan, console)
        raise typer.Exit(EXIT_OK if plan.ok else EXIT_EDITS_FAILED)
    result, code = apply_edits(edits, workspace, console, yes=yes, force=force)
    if yes:
        show_plan(result.plan, console)  # what --yes applied (or why not)
    for note in result.notes:
        console.print(f"note: {visible(note)}", markup=False)
    if code == EXIT_OK:
        console.print(visible(result.message()), markup=False)
        raise typer.Exit(code)
    if result.status == "declined":
        hint = " (a change has a warning: add --force to apply it anyway)" if yes and result.plan.warnings else ""
        fail("not applied" + hint, code)
    fail(visible(result.message()), code)


def undo(
    list_: Annotated[bool, typer.Option("--list", "-l", help="Show the journal of applied batches, newest first.")]
    = False,
    batch: Annotated[str | None, typer.Option("--batch", help="Undo this batch id (from --list) instead of the "
                                                              "last one.", show_default=False)] = None,
) -> None:
    """Undo the last applied edit batch: restore every file's exact bytes and mode, delete created files.

    \b
    Refuses (and changes nothing) when a file was changed after cb wrote it. Uncommitted changes cb
    saved before editing a dirty file in a git repo stay under refs/cb/snapshots/<batch>.

    \b
    Examples:
      cb undo              take back the last batch
      cb undo --list       what was applied, when, and whether it was undone
    """
    from cb.paths import undo_dir
    from tools import Journal, visible

    journal = Journal(undo_dir())
    if list_:
        entries = journal.entries()
        if not entries:
            typer.echo("the undo journal is empty")
        for entry in entries:
            typer.echo(visible(entry.summary()))
        raise typer.Exit(EXIT_OK)
    try:
        result = journal.undo(batch) if batch else journal.undo_last()
    except OSError as exc:
        fail(f"cannot use the undo journal in {journal.directory}: {exc.strerror or exc}")
    if not result.ok:
        fail(visible(result.message()), EXIT_EDITS_FAILED)
    typer.echo(visible(result.message()))


def _read_source(source: str) -> str:
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"{source} is not UTF-8 text (byte {exc.start}); nothing applied", EXIT_EDITS_FAILED)
