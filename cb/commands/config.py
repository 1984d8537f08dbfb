"""`cb config show|set`: the layered settings and where each value comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cb import config, exits, paths
from cb.commands import common

app = typer.Typer(help="Settings: defaults < OPENAI_API_KEY/OPENAI_BASE_URL < user config < project .cb.toml < "
                  "CB_* env vars < flags. Config files are written 0600.", no_args_is_help=True)


@app.command("show")
def show() -> None:
    """Show every key, its value and which layer set it (API keys are masked)."""
    settings = common.settings()
    width = max(map(len, config.KEYS))
    for key in config.KEYS:
        value = getattr(settings, key)
        shown = ("*" * 8 if value else "") if key == "api_key" else repr(value)
        typer.echo(f"{key:<{width}}  {shown:<24}  ({settings.source[key]})")
    for name, model in settings.aliases.items():
        typer.echo(f"alias {name} = {model!r}")
    typer.echo(f"\nuser config:    {paths.config_file()}")
    typer.echo(f"project config: {Path(settings.project_root) / config.PROJECT_FILE}")


@app.command("set")
def set_key(
    key: Annotated[str, typer.Argument(help=f"One of: {', '.join(config.KEYS)}.")],
    value: Annotated[str, typer.Argument(help="The value (converted to the key's type).")],
    project: Annotated[bool, typer.Option("--project", help="Write the project's .cb.toml instead of the user "
                                          "config.")] = False,
) -> None:
    """Set a key in the user config (or the project's .cb.toml with --project), keeping the file's comments;
    the file is written with mode 0600.

    Examples: cb config set base_url http://127.0.0.1:8080/v1    ·    cb config set temperature 0 --project
    """
    target = (Path(common.settings().project_root) / config.PROJECT_FILE) if project else paths.config_file()
    try:
        stored = config.set_value(key, value, target)
    except config.ConfigError as exc:
        common.fail(str(exc), exits.EXIT_USAGE)
    typer.echo(f"{key} = {stored!r}  ({target})")
