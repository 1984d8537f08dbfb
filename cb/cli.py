"""The `cb` command line: the root Typer app.

Commands live in modules under `cb/commands/`, one module per area, each named in `COMMANDS` below and
imported only when that command runs (or when `cb --help` lists them all), so a one-shot `cb "question"`
loads `ask` alone. Command modules import only typer (and the stdlib) at module level; anything heavier
(prompt_toolkit, redis, rich) is imported inside the command body, so `cb --help` stays as fast as a bare
Typer app. Never import torch or transformers anywhere in `cb`.

Routing (`CbGroup`): `cb` alone opens the chat REPL when stdin is a terminal (and reads the question from
stdin otherwise), as do chat options alone on a terminal (`cb -c`, `cb -s "be terse"`); `cb "question"` (any
first word that is not a command) is `cb ask "question"`. `cb --version` prints the version.

Shell completion (`cb completion bash|zsh|fish`, cb.completion): the shell runs cb with _CB_COMPLETE set, and
`main` answers before the app parses anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
import sys
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from cb import exits

# Command name -> "module:attribute", a command function or a sub-app (a Typer), in `cb --help` order.
COMMANDS: dict[str, str] = {
    "ask": "cb.commands.oneshot:ask",
    "chat": "cb.commands.chat:chat",
    "web": "cb.commands.web:web",
    "open": "cb.commands.files:open_files",
    "close": "cb.commands.files:close_files",
    "files": "cb.commands.files:list_files",
    "apply": "cb.commands.edit:apply",
    "undo": "cb.commands.edit:undo",
    "models": "cb.commands.models:app",
    "status": "cb.commands.status:status",
    "copy": "cb.commands.clip:copy",
    "bench": "cb.commands.bench:app",
    "paths": "cb.commands.info:show_paths",
    "version": "cb.commands.info:version",
    "session": "cb.commands.session:app",
    "completion": "cb.commands.completion:completion",
    "config": "cb.commands.config:app",
    "server": "cb.commands.server:app",
    "tab": "cb.commands.tab:app",
    "clip": "cb.commands.clip:app",
}

HELP = f"""cb: a terminal coding companion. Chat about the files you have open, apply the edits you accept.

\b
  cb                          open the chat REPL (on a terminal)
  cb "why does this fail?"    answer once and exit (= cb ask ...)
  git diff | cb "write the commit message"    piped stdin is context
  cb open app.py; cb "add type hints to area()" --yes    apply proposed edits without asking

\b
Exit codes:
  {exits.EXIT_OK}    done (edits applied, if any were proposed)
  {exits.EXIT_ERROR}    error: model server, config or file unusable (one line on stderr)
  {exits.EXIT_USAGE}    bad usage
  {exits.EXIT_EDITS_PENDING}    edits proposed and not applied (no terminal and no --yes, or declined)
  {exits.EXIT_EDITS_FAILED}    edits proposed and could not be applied (file changed, malformed edit)
  {exits.EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""


class CbGroup(TyperGroup):
    """A command group whose default command is `ask` (or `chat` with no arguments on a terminal).

    Its commands are loaded on first use from `COMMANDS`, each built by Typer as if registered on the app.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:  # completion parses what was typed, as typed
            args = self.route(ctx, args)
        _light_coercion(self)
        return super().parse_args(ctx, args)

    def route(self, ctx: Any, args: list[str]) -> list[str]:
        """The arguments with the default command named (see the module docstring)."""
        if not args:
            return ["chat"] if sys.stdin.isatty() else ["ask"]
        if args[0] in COMMANDS or args[0] in ("-h", "--help", "--version"):
            return args
        if args[0].startswith("-") and sys.stdin.isatty() and _options_only(self.get_command(ctx, "chat"), args):
            return ["chat", *args]
        return ["ask", *args]

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in self.commands and name in COMMANDS:
            module, _, attr = COMMANDS[name].partition(":")
            target = getattr(importlib.import_module(module), attr)
            holder = typer.Typer(add_completion=False, rich_markup_mode=None)
            if isinstance(target, typer.Typer):
                holder.add_typer(target, name=name)
            else:
                holder.command(name)(target)
            command = typer.main.get_group(holder).commands[name]
            _light_coercion(command)
            self.commands[name] = command
        return self.commands.get(name)


def _options_only(command: Any, args: list[str]) -> bool:
    """Whether `args` are all options of `command` (with their values), no positional word among them."""
    takes_value = {name: not (param.is_flag or param.count) for param in command.params
                   if param.param_type_name == "option" for name in (*param.opts, *param.secondary_opts)}
    i = 0
    while i < len(args):
        name, eq, _ = args[i].partition("=")
        if name not in takes_value:
            return False
        i += 2 if takes_value[name] and not eq else 1
    return i == len(args)


def _light_coercion(group: Any) -> None:
    """Convert plain parameters (str, int, float, bool, list[str]) with the stdlib, not Typer's pydantic.

    Typer builds a pydantic TypeAdapter for every parameter of the command it runs, even one left at its
    default (and for the help option); importing pydantic and building them costs more than the rest of a
    one-shot `cb` start-up. For these plain types the conversion is the same (int("3"), float("0.2")), so
    cb installs a light converter before parsing. If Typer's internals change shape, Typer's own stays.
    """
    plain_param = _plain_param()
    if plain_param is None:
        return

    def lighten(param: Any) -> None:
        descriptor = getattr(param, "type_descriptor", None)
        annotation = getattr(descriptor, "annotation", None)
        plain = annotation in (str, int, float, bool, list[str]) and getattr(descriptor, "file_annotation", 1) is None
        if descriptor is not None and plain and getattr(param, "_runtime_param", "absent") is None:
            with contextlib.suppress(TypeError):  # Typer's RuntimeParam changed its fields: keep its own
                param._runtime_param = plain_param(annotation=annotation, parameter_info=descriptor.parameter_info)

    def light_help(command: Any) -> None:
        make = command.get_help_option

        def get_help_option(ctx: Any) -> Any:
            option = make(ctx)
            if option is not None:
                lighten(option)
            return option

        command.get_help_option = get_help_option

    for command in (group, *getattr(group, "commands", {}).values()):
        if command is not group and hasattr(command, "commands"):  # a sub-group (session, config, server, ...)
            _light_coercion(command)
            continue
        if "get_help_option" not in vars(command):
            light_help(command)
        for param in command.params:
            lighten(param)


@functools.cache
def _plain_param() -> type | None:
    """Typer's RuntimeParam with a stdlib conversion for plain types (None if Typer has no such class)."""
    try:
        from typer._coercion import RuntimeParam
    except ImportError:
        return None

    @dataclasses.dataclass(frozen=True)
    class Plain(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = self.annotation
            if kind == list[str]:
                return [str(v) for v in value]
            if kind is bool:
                if isinstance(value, bool):
                    return value
            else:
                with contextlib.suppress(TypeError, ValueError):
                    return kind(value)
            label = {int: "integer", float: "number", bool: "boolean"}.get(kind, getattr(kind, "__name__", "value"))
            raise typer.BadParameter(f"{value!r} is not a valid {label}.", ctx=ctx, param=param)

    return Plain


app = typer.Typer(
    name="cb",
    cls=CbGroup,
    help=HELP,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)



def _print_version(value: bool) -> None:
    if value:
        from cb.commands.info import version

        version()
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[bool, typer.Option("--version", help="Print cb's version and exit.", is_eager=True,
                                               callback=_print_version)] = False,
) -> None:
    """Keep the app a command group, whatever number of commands it has."""


def main(argv: list[str] | None = None) -> Any:
    shell = os.environ.get("_CB_COMPLETE")
    if shell:  # the shell asks for completions (cb.completion's scripts)
        from cb.completion import complete

        return complete(typer.main.get_group(app), shell, sys.argv[1:] if argv is None else argv)
    return app(args=argv)
