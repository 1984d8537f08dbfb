"""`cb completion bash|zsh|fish`: print the shell's completion script (cb.completion)."""

from __future__ import annotations

from typing import Annotated

import typer

from cb import exits
from cb.commands import common
from cb.completion import SHELLS, script


def completion(shell: Annotated[str, typer.Argument(help=f"One of: {', '.join(SHELLS)}.")]) -> None:
    """Print the completion script for your shell; install it once:

    bash: echo 'eval "$(cb completion bash)"' >> ~/.bashrc    ·    zsh: echo 'eval "$(cb completion zsh)"' >> ~/.zshrc
    fish: cb completion fish > ~/.config/fish/completions/cb.fish
    """
    if shell not in SHELLS:
        common.fail(f"no completion for {shell!r}; use one of: {', '.join(SHELLS)}", exits.EXIT_USAGE)
    typer.echo(script(shell), nl=False)
