"""The `ulm` command line: the root Typer app. Each command lives in its own module under
`ulm/commands/` and is registered below; command modules import torch only inside the command body,
so `ulm --help` stays fast. `ulm --version` reads the versions from package metadata (torch is not imported)."""

from __future__ import annotations

from typing import Annotated

import typer

from cb import package_version
from ulm.commands import (
    bench,
    bench_serve,
    bench_train,
    cache,
    chat,
    convert,
    data,
    generate,
    info,
    models,
    serve,
    train,
)

app = typer.Typer(
    name="ulm",
    help="µLM: cb's own small-language-model engine. Run, inspect, serve, benchmark, train and convert local models.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("generate")(generate.generate)
app.command("chat")(chat.chat)
app.command("info")(info.info)
app.add_typer(models.group, name="models")
app.command("serve")(serve.serve)
app.add_typer(cache.app, name="cache")
bench_app = bench_serve.bench_group(bench.bench)  # `ulm bench` and `ulm bench serve`
bench_app.command("train")(bench_train.bench_train)
app.add_typer(bench_app, name="bench")
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.add_typer(convert.app, name="convert")


def _print_version(value: bool) -> None:
    if value:
        torch = package_version("torch")
        typer.echo(f"ulm {package_version() or '(not installed: no package metadata)'} "
                   f"({f'torch {torch}' if torch else 'torch not installed'})")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[bool, typer.Option("--version", help="Print the versions of ulm and torch and exit.",
                                               is_eager=True, callback=_print_version)] = False,
) -> None:
    """Keep the app a command group, whatever number of commands it has."""


def main() -> None:
    app()
