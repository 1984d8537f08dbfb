"""`cb server start|stop|logs`: the local `ulm serve` that cb starts on first use."""

from __future__ import annotations

from typing import Annotated

import typer

from cb.commands import common

app = typer.Typer(help="The local model server (ulm serve) cb runs in the background.", no_args_is_help=True)


@app.command("start")
def start(model: common.ModelOpt = None) -> None:
    """Start the local server (or reuse the running one) and wait until it is healthy."""
    from cb import server
    from cb.render import Out

    settings = common.settings(model=model)
    try:
        info = server.ensure(settings.model, settings.server_port, settings.server_args,
                             settings.server_start_timeout, wait=Out().spinner)
    except server.ServerError as exc:
        common.fail(str(exc))
    typer.echo(f"model server up at {info.base_url} (model {info.model}, pid {info.pid}, log {info.log})")


@app.command("stop")
def stop() -> None:
    """Stop the local server (SIGTERM, then SIGKILL after 10 s)."""
    from cb import server

    info = server.stop()
    typer.echo(f"stopped the model server (pid {info.pid})" if info else "no model server running")


@app.command("logs")
def logs(lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines from the end.")] = 40) -> None:
    """Print the end of the server's log (control characters made visible)."""
    from cb import server
    from cb.sanitize import sanitize

    path = server.log_file()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        common.fail(f"no server log yet ({path})")
    tail = text.splitlines()[-lines:] if lines > 0 else []
    for line in tail:
        typer.echo(sanitize(line))
