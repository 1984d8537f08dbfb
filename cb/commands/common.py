"""Options shared by the commands that talk to a model, defined once, and the helpers every command uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cb import config, session
from cb.exits import EXIT_ERROR

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model name (config key: model).",
                                              show_default=False)]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible base URL, e.g. "
                                                "http://127.0.0.1:8080/v1 (config key: base_url; empty = local "
                                                "ulm serve).", show_default=False)]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", help="API key (config key: api_key; env CB_API_KEY).",
                                               show_default=False)]
TemperatureOpt = Annotated[float | None, typer.Option("--temperature", "-t", help="Sampling temperature.",
                                                      show_default=False)]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-tokens", help="Most tokens in the answer.",
                                                  show_default=False)]

def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print `cb: message` on stderr (one line) and exit with `code`."""
    from cb.render import Out

    Out().error(message)
    raise typer.Exit(code)


def settings(**flags: Any) -> config.Settings:
    """Resolve the layered config with these flags; a bad config is a one-line error."""
    try:
        return config.load(flags)
    except config.ConfigError as exc:
        fail(str(exc))


def current_session(settings: config.Settings) -> session.Session:
    try:
        return session.current(Path(settings.project_root))
    except session.SessionError as exc:
        fail(str(exc))
