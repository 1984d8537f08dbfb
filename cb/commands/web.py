"""`cb web`: the same sessions, open files, model server and agentshell tabs in a local browser page."""

from __future__ import annotations

from typing import Annotated

import typer

from cb import exits
from cb.commands import common


def web(
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free one).")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Address to bind. Anything but loopback needs --key.")]
    = "127.0.0.1",
    key: Annotated[str | None, typer.Option("--key", envvar="CB_WEB_KEY", show_default=False,
                                            help="A secret of 16+ characters to use instead of the random "
                                                 "token (required for a non-loopback --host).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each request (never its query "
                                          "string).")] = False,
    model: common.ModelOpt = None,
    base_url: common.BaseUrlOpt = None,
    api_key: common.ApiKeyOpt = None,
    temperature: common.TemperatureOpt = None,
    max_tokens: common.MaxTokensOpt = None,
) -> None:
    """Serve cb in a browser: chat with streamed answers, edits as diffs to apply / decline / edit, undo, the
    open files and context meter, and the agentshell tabs, live.

    \b
    It prints a URL holding a random token for this start; open it (once) in a browser on this machine.
    From a laptop, tunnel instead of binding elsewhere:
      ssh -L 8765:127.0.0.1:8765 box   then open the printed URL on the laptop
    Ctrl-C stops it.
    """
    from cb.web.security import BindRefused, check_bind

    try:
        check_bind(host, key)
    except BindRefused as exc:
        common.fail(str(exc), exits.EXIT_USAGE)
    settings = common.settings(model=model, base_url=base_url, api_key=api_key, temperature=temperature,
                               max_tokens=max_tokens)
    from cb.web.server import serve

    def ready(url: str) -> None:
        typer.echo(f"cb web: serving {settings.project_root} on {url}")
        typer.echo("cb web: open that URL in your browser (it holds this start's token); Ctrl-C stops")

    try:
        serve(settings, host, port, key, verbose, ready)
    except OSError as exc:
        common.fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another with --port")
    except KeyboardInterrupt:
        typer.echo("cb web: stopped")
