"""`cb version` and `cb paths`: what is installed and where cb keeps its files."""

from __future__ import annotations

import json

import typer

from cb import package_version, paths


def version() -> None:
    """Print cb's version (the installed package's)."""
    typer.echo(f"cb {package_version() or '(not installed: no package metadata)'}")


def show_paths(as_json: bool = typer.Option(False, "--json", help="Print a JSON object.")) -> None:
    """Show where cb keeps config, state, cache and sockets (set CB_HOME to move them all)."""
    where = {
        "config": paths.config_dir(),
        "state": paths.state_dir(),
        "cache": paths.cache_dir(),
        "runtime": paths.runtime_dir(),
        "config_file": paths.config_file(),
        "agentshell_socket": paths.agentshell_socket(),
    }
    if as_json:
        typer.echo(json.dumps({k: str(v) for k, v in where.items()}, indent=2))
    else:
        width = max(map(len, where))
        for key, value in where.items():
            typer.echo(f"{key:<{width}}  {value}")


