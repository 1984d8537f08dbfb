"""`cb bench`: start-up and round-trip overhead, each printed next to its anchor (see cb/bench.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from cb.commands import common


def bench(
    runs: Annotated[int, typer.Option("--runs", "-n", help="Runs of each measurement.")] = 10,
    round_trip: Annotated[bool, typer.Option("--round-trip/--no-round-trip", help="Also time one-shot answers "
                                             "against the (started if needed) model server.")] = True,
) -> None:
    """Time `cb --help` against a minimal Typer app, and `cb "hi"` against the server's own TTFT."""
    from cb import bench as b
    from cb.chat import describe_error

    try:
        typer.echo(b.run(runs, round_trip))
    except Exception as exc:  # one line, never a traceback
        common.fail(describe_error(exc))
