"""`cb session list|new|use|show|export|search`: chat sessions, one current per project (git root, else cwd)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from cb import exits
from cb import session as sessions
from cb.commands import common
from cb.sanitize import sanitize

app = typer.Typer(help="Chat sessions: one current session per project; conversations are kept as JSONL.",
                  no_args_is_help=True)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@app.command("list")
def list_sessions(all_projects: Annotated[bool, typer.Option("--all", "-a", help="Sessions of every project.")]
                  = False) -> None:
    """List this project's sessions, newest first; * marks the current one."""
    settings = common.settings()
    project = Path(settings.project_root)
    current = sessions.current(project).id
    for s in sessions.list_all(None if all_projects else project):
        mark = "*" if s.id == current else " "
        n = len(s.messages())
        where = f"  {s.project}" if all_projects else ""
        typer.echo(f"{mark} {s.id}  {_when(s.created)}  {n} messages  {len(s.files)} files"
                   f"{'  ' + s.name if s.name else ''}{where}")


@app.command("new")
def new_session(name: Annotated[str, typer.Argument(help="An optional name.")] = "") -> None:
    """Start a new session for this project and make it current (open files start empty)."""
    s = sessions.new(Path(common.settings().project_root), name)
    typer.echo(f"new session {s.id}")


@app.command("use")
def use_session(ref: Annotated[str, typer.Argument(help="Session id, id prefix or name.")]) -> None:
    """Make another session current for this project."""
    try:
        s = sessions.find(ref)
    except sessions.SessionError as exc:
        common.fail(str(exc))
    project = str(common.settings().project_root)
    if s.project != project:
        s.project = project
        s.save()
    sessions.use(s)
    typer.echo(f"using session {s.id}")


@app.command("show")
def show_session(ref: Annotated[str | None, typer.Argument(help="Session id (default: current).",
                                                           show_default=False)] = None) -> None:
    """Show a session: its open files and conversation."""
    settings = common.settings()
    try:
        s = sessions.find(ref) if ref else sessions.current(Path(settings.project_root))
    except sessions.SessionError as exc:
        common.fail(str(exc))
    typer.echo(f"session {s.id}  project {s.project}  created {_when(s.created)}")
    typer.echo("files: " + (", ".join(s.display(p) for p in s.files) or "none"))
    for m in s.messages():
        typer.echo(f"\n[{m['role']}]\n{sanitize(m['content'])}")


@app.command("export")
def export_session(
    ref: Annotated[str | None, typer.Argument(help="Session id (default: current).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown or jsonl.")] = "markdown",
) -> None:
    """Print a session's conversation as Markdown (or JSONL) on stdout, e.g. cb session export > chat.md"""
    settings = common.settings()
    try:
        s = sessions.find(ref) if ref else sessions.current(Path(settings.project_root))
    except sessions.SessionError as exc:
        common.fail(str(exc))
    if fmt == "jsonl":
        for m in s.messages():
            typer.echo(json.dumps(m, ensure_ascii=True))
    elif fmt == "markdown":
        typer.echo(f"# cb session {s.id}\n")
        for m in s.messages():
            typer.echo(f"## {m['role']}\n\n{sanitize(m['content'])}\n")
    else:
        common.fail(f"unknown format {fmt!r}: use markdown or jsonl", exits.EXIT_USAGE)


@app.command("search")
def search_sessions(
    text: Annotated[str, typer.Argument(help="The text to find (case-insensitive).")],
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most matches to print.")] = 50,
) -> None:
    """Find TEXT in the conversations of every session; print each match's session id, message and snippet.

    Example: cb session search "race condition"    ·    then: cb session show ID
    """
    if not text.strip():
        common.fail("give the text to search for", exits.EXIT_USAGE)
    shown = 0
    for match in sessions.search(text):
        if shown == limit:
            typer.echo("(more matches not shown; raise --limit)", err=True)
            break
        shown += 1
        typer.echo(f"{match.session.id}  #{match.index + 1} {match.role}: {sanitize(match.snippet)}")
    if not shown:
        typer.echo(f"no message contains {sanitize(text)!r}", err=True)
