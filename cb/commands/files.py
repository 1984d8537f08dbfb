"""`cb open`, `cb close`, `cb files`: the files the current session shows the model every turn (with the
project's instruction files, AGENTS.md and CONVENTIONS.md, which are in the context without being opened)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cb import exits
from cb import session as sessions
from cb.commands import common


def open_files(paths: Annotated[list[str], typer.Argument(help="Files to add to the context.")]) -> None:
    """Add files to the current session's context (re-read fresh every turn).

    Example: cb open app.py tests/test_app.py
    """
    s = common.current_session(common.settings())
    try:
        added = s.open_files(paths)
    except sessions.SessionError as exc:
        common.fail(str(exc))
    for p in added:
        typer.echo(f"opened {s.display(p)}")
    if not added:
        typer.echo("already open")


def close_files(
    paths: Annotated[list[str] | None, typer.Argument(help="Files to remove from the context.",
                                                      show_default=False)] = None,
    all_files: Annotated[bool, typer.Option("--all", "-a", help="Close every open file.")] = False,
) -> None:
    """Remove files from the current session's context.

    Example: cb close app.py    ·    cb close --all
    """
    s = common.current_session(common.settings())
    if all_files:
        removed = s.close_all()
    elif paths:
        try:
            removed = s.close_files(paths)
        except sessions.SessionError as exc:
            common.fail(str(exc))
    else:
        common.fail("name the files to close, or --all", exits.EXIT_USAGE)
    for p in removed:
        typer.echo(f"closed {s.display(p)}")


def _size(path: str) -> str:
    try:
        n = Path(path).read_bytes().count(b"\n")
    except OSError:
        return "missing"
    return f"{n} lines"


def list_files() -> None:
    """List the files in the context with their size in lines: the project's instruction files (AGENTS.md,
    CONVENTIONS.md; config key instruction_files), then the open files (missing ones are marked)."""
    settings = common.settings()
    s = common.current_session(settings)
    for p in s.instruction_files(settings.instruction_files.split()):
        typer.echo(f"{s.display(p)}  ({_size(p)}, project instructions)")
    if not s.files:
        typer.echo("no open files (add some with: cb open PATH...)")
        return
    for p in s.files:
        typer.echo(f"{s.display(p)}  ({_size(p)})")
