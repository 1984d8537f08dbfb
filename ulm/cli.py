"""The `ulm` command line: the root Typer app. Each command lives in its own module under
`ulm/commands/` and is registered below; command modules import torch only inside the command body,
so `ulm --help` stays fast."""

from __future__ import annotations

import typer

from ulm.commands import bench, bench_serve, bench_train, chat, convert, data, generate, info, models, serve, train

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
app.command("models")(models.models)
app.command("serve")(serve.serve)
bench_app = bench_serve.bench_group(bench.bench)  # `ulm bench` and `ulm bench serve`
bench_app.command("train")(bench_train.bench_train)
app.add_typer(bench_app, name="bench")
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.add_typer(convert.app, name="convert")


@app.callback()
def root() -> None:
    """Keep the app a command group, whatever number of commands it has."""


def main() -> None:
    app()
