"""How an agentshell command answers: text or `--json`, and every agentshell error as one line and an exit code
(1 error, 3 daemon unavailable, 124 timed out). Public for the command lines built on agentshell: its own
CLI and `cb tab`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer

from agentshell import protocol as p

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
F = TypeVar("F", bound=Callable[..., Any])
EXIT_UNAVAILABLE, EXIT_TIMEOUT = 3, 124


def one_line_errors(fn: F) -> F:
    """Turn agentshell errors into one line on stderr (or a JSON error object) and an exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except p.AgentshellError as e:
            if kwargs.get("as_json"):
                typer.echo(json.dumps({"error": {"code": e.code, "message": str(e)}}))
            else:
                typer.echo(f"agentshell: {e}", err=True)
            code = {p.ErrorCode.UNAVAILABLE: EXIT_UNAVAILABLE, p.ErrorCode.TIMEOUT: EXIT_TIMEOUT}.get(e.code, 1)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def emit(as_json: bool, data: Any, text: str) -> None:
    """Print `data` as indented JSON with --json, else `text`."""
    typer.echo(json.dumps(data, indent=2) if as_json else text)
