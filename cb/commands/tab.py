"""`cb tab ...`: the agentshell process tabs from inside cb, the same verbs as the `agentshell` CLI.

Each verb is the agentshell command itself (defined once, in agentshell/cli.py), plus `cb tab run CMD`, the
command-line twin of the REPL's `/run CMD`: a new tab running CMD through your shell.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from agentshell import cli as ash
from agentshell import output

app = typer.Typer(
    help="Process tabs (agentshell): long-running commands that outlive the ssh session; their tails go into "
         "cb's prompt.\n\n"
         "Examples:\n\n"
         "  cb tab run 'npm run dev' --name dev\n\n"
         "  cb tab ls\n\n"
         "  cb tab read dev --tail 20\n\n"
         "  cb tab send dev --keys C-c",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for verb, command in (("ls", ash.ls_), ("new", ash.new), ("send", ash.send), ("read", ash.read),
                      ("wait", ash.wait), ("signal", ash.signal_), ("resize", ash.resize), ("kill", ash.kill),
                      ("rm", ash.rm), ("rename", ash.rename), ("attach", ash.attach), ("logs", ash.logs)):
    app.command(verb, context_settings={"allow_interspersed_args": False} if verb == "new" else None)(command)


@app.command("run")
@output.one_line_errors
def run(
    command: str = typer.Argument(..., help="A shell command line, run as `$SHELL -c COMMAND`."),
    name: str = typer.Option(None, "--name", "-n", help="A name to use instead of the id."),
    cwd: Path = typer.Option(None, "--cwd", "-C", help="Working directory (default: the current one)."),  # noqa: B008
    as_json: bool = output.JSON,
) -> None:
    """Run a command line in a new tab (like `/run` in the chat): `cb tab run 'pytest -x' --name tests`."""
    from agentshell.client import Client, user_shell

    with Client.connect(client_name="cb") as c:
        tab = c.new([user_shell(), "-c", command], name=name, cwd=(cwd or Path.cwd()).resolve(), env=dict(os.environ))
    output.emit(as_json, tab.to_wire(), f"tab {tab.label} started (pid {tab.pid}): {command}")
