"""The `cb` command line: the root Typer app.

Commands live in modules under `cb/commands/`, one module per area, each registered below. They import
only typer (and the stdlib) at module level; anything heavier (httpx, prompt_toolkit, redis, rich) is
imported inside the command body, so `cb --help` stays as fast as a bare Typer app. Never import torch
or transformers anywhere in `cb`.
"""

from __future__ import annotations

import typer

from cb.commands import info

app = typer.Typer(
    name="cb",
    help="cb: a terminal coding companion. Chat about the files you have open, apply the edits you accept.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("paths")(info.show_paths)
app.command("version")(info.version)


@app.callback()
def root() -> None:
    """Keep the app a command group, whatever number of commands it has."""


def main() -> None:
    app()
