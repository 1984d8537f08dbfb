"""Options shared by the commands that talk to a model, defined once, and the helpers every command uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cb import config, session

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

# Exit codes, shared by every command (documented in `cb --help`).
EXIT_OK = 0
EXIT_ERROR = 1  # the model server, config or a file could not be used
EXIT_USAGE = 2  # bad arguments
EXIT_EDITS_PENDING = 3  # edits were proposed and not applied (no TTY and no --yes, or declined)
EXIT_EDITS_FAILED = 4  # edits were proposed and could not be applied (stale file, malformed block)
EXIT_INTERRUPTED = 130  # Ctrl-C


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
