"""`ulm models`: the models µLM knows by short name, where their files are and how big."""

from __future__ import annotations

import json

import typer

from ulm.registry import DEFAULT_MODEL, EMBEDDED, ModelNotFoundError


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def models(as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table.")) -> None:
    """List the models known by short name, with path and size. Any .gguf file or HF directory also works
    wherever a model is asked for (`--model PATH`)."""
    rows = []
    for name, entry in EMBEDDED.items():
        try:
            path = entry.locate()
            rows.append({"name": name, "default": name == DEFAULT_MODEL, "installed": True, "path": str(path),
                         "size_bytes": path.stat().st_size, "description": entry.description})
        except ModelNotFoundError as exc:
            rows.append({"name": name, "default": name == DEFAULT_MODEL, "installed": False, "path": None,
                         "size_bytes": None, "description": entry.description, "error": str(exc)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "size", "path", "description"):
        table.add_column(col)
    for row in rows:
        name = row["name"] + (" (default)" if row["default"] else "")
        if row["installed"]:
            table.add_row(name, _size(row["size_bytes"]), row["path"], row["description"])
        else:
            table.add_row(name, "-", "[red]not installed[/red]", row["description"])
    console = Console()
    console.print(table)
    for row in rows:
        if not row["installed"]:
            console.print(f"[red]error:[/red] {row['error']}", highlight=False)
