"""`cb models` (the models the configured server offers, starting the local server when needed, and the
aliases) and `cb models alias NAME MODEL` (a short name for a model, kept in the config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cb import config, exits, paths
from cb.commands import common

app = typer.Typer(help="The server's models, and model aliases: cb models alias fast qwen2.5-coder-0.5b, then "
                  "cb -m fast \"...\".")


@app.callback(invoke_without_command=True)
def models(ctx: typer.Context, base_url: common.BaseUrlOpt = None, api_key: common.ApiKeyOpt = None) -> None:
    """List the models of the configured server, with their context length (* marks the configured model),
    then the aliases."""
    if ctx.invoked_subcommand is not None:
        return
    from cb.backend import BackendError
    from cb.chat import Chat, describe_error
    from cb.render import Out
    from cb.sanitize import sanitize

    settings = common.settings(base_url=base_url, api_key=api_key)
    entries, error = [], ""
    with Chat(settings, common.current_session(settings), Out()) as chat:
        try:
            entries = chat.backend().models()
        except (BackendError, Exception) as exc:  # one line, never a traceback
            error = describe_error(exc)
    for e in entries:
        ctx_len = next((e[k] for k in ("context_length", "max_model_len", "n_ctx") if isinstance(e.get(k), int)),
                       None)
        mark = "*" if e["id"] == settings.model else " "
        names = [name for name, model in settings.aliases.items() if model == e["id"]]
        typer.echo(f"{mark} {sanitize(str(e['id']))}" + (f"  (context {ctx_len})" if ctx_len else "")
                   + (f"  (alias {sanitize(', '.join(names))})" if names else ""))
    if settings.aliases:
        typer.echo("aliases:")
        for name, model in settings.aliases.items():
            typer.echo(f"  {sanitize(name)} = {sanitize(model)}")
    if error:
        common.fail(error)


@app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="The alias, e.g. fast.")],
    model: Annotated[str | None, typer.Argument(help="The model it stands for: anything -m/--model accepts (a "
                                                "name, a .gguf file, an HF dir).", show_default=False)] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the alias.")] = False,
    project: Annotated[bool, typer.Option("--project", help="Keep it in the project's .cb.toml instead of the "
                                          "user config.")] = False,
) -> None:
    """Give a model a short name, usable wherever a model name is (-m, the model key, /model, cb server start).

    Examples: cb models alias fast qwen2.5-coder-0.5b    ·    cb models alias fast    ·    cb models alias fast --remove
    """
    settings = common.settings()
    target = (Path(settings.project_root) / config.PROJECT_FILE) if project else paths.config_file()
    if model is None and not remove:
        if name not in settings.aliases:
            common.fail(f"no alias {name!r} (cb models lists them)")
        typer.echo(f"{name} = {settings.aliases[name]}")
        return
    if model is not None and remove:
        common.fail("give a model to alias, or --remove, not both", exits.EXIT_USAGE)
    if model is not None and Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())  # a file or dir: the same one from any directory
    try:
        changed = config.set_alias(name, model, target)
    except config.ConfigError as exc:
        common.fail(str(exc), exits.EXIT_USAGE)
    if not changed:
        common.fail(f"no alias {name!r} in {target}")
    if model is None:
        typer.echo(f"removed alias {name} ({target})")
    else:
        typer.echo(f"{name} = {model}  ({target})")
