"""`ulm bench serve`: concurrent streaming clients against `ulm serve` (see ulm/bench/serve.py), and the
`ulm bench` group that holds it next to the engine benchmark (`ulm bench` with no sub-command)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import typer

SERVE_ARGS = typer.Argument(None, help="With no --url: options for the `ulm serve` to start, e.g. "
                            "-- --mode fast --parallel 4.")


def bench_serve(
    url: str = typer.Option(None, help="Base URL of a running server (e.g. http://127.0.0.1:8080). "
                            "Default: start one with the options after --."),
    api_key: str = typer.Option(None, "--api-key", envvar="ULM_API_KEY", help="The server's API key, if any."),
    clients: str = typer.Option("1,4,16", help="Comma-separated concurrency levels."),
    requests: int = typer.Option(2, min=1, help="Streaming requests per client at each level."),
    max_tokens: int = typer.Option(64, min=1, help="max_tokens of every request."),
    rounds: int = typer.Option(3, min=1, help="Rounds over the levels (1, 4, 16, 1, 4, 16, ...): each level's "
                               "tokens/s is its median over the rounds."),
    repeats: int = typer.Option(3, min=1, help="Second-turn measurements (the median is reported)."),
    context: int = typer.Option(None, min=16, help="Tokens of code in the chat's system prompt for the "
                                "second-turn TTFT (e.g. 1000, a cb turn's context; default: a short one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    serve_args: list[str] = SERVE_ARGS,
) -> None:
    """Drive `ulm serve` with 1, 4 and 16 concurrent streaming clients: aggregate tokens/s, TTFT and
    per-token latency p50/p99, and the TTFT of a second chat turn with and without prefix reuse. The levels
    run in rounds, so a noisy spell of the machine hits them alike; tokens/s is the median over the rounds.

    Examples:

        ulm bench serve -- --mode fast --parallel 4

        ulm bench serve --url http://127.0.0.1:8080 --clients 1,4 --json

        ulm bench serve --clients 1 --context 1000 -- --model qwen2.5-coder-1.5b --mode fast
    """
    import httpx

    from ulm.bench import serve as bench

    try:
        levels = [int(c) for c in clients.split(",") if c.strip()]
    except ValueError:
        raise typer.BadParameter(f"'{clients}' is not a comma-separated list of numbers",
                                 param_hint="--clients") from None
    proc = None
    try:
        if url is None:
            typer.echo(f"starting ulm serve {' '.join(serve_args or [])} ...", err=True)
            proc, url = bench.spawn_server(list(serve_args or []))
        results = bench.run(url.rstrip("/"), api_key, levels, requests, max_tokens, repeats, rounds,
                            echo=lambda msg, err=False: typer.echo(msg, err=err), context=context)
    except httpx.HTTPError as exc:
        typer.echo(f"ulm bench serve: error: cannot talk to the server at {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        typer.echo(f"ulm bench serve: error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if proc is not None:
            bench.stop_server(proc)
    typer.echo(json.dumps(results, indent=2) if as_json else bench.render(results))


def bench_group(default: Callable[..., Any]) -> typer.Typer:
    """`ulm bench` as a group: with no sub-command it runs `default` (the engine benchmark) with its own
    options; `ulm bench serve` runs the server benchmark."""
    group = typer.Typer(help=default.__doc__, no_args_is_help=False)

    def run_default(ctx: typer.Context, **kwargs: Any) -> None:
        if ctx.invoked_subcommand is None:
            default(**kwargs)

    # The callback takes `default`'s options (plus the context), so `ulm bench --engines ...` still works.
    sig = inspect.signature(default, eval_str=True)
    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    run_default.__signature__ = sig.replace(parameters=[ctx_param, *sig.parameters.values()])  # type: ignore[attr-defined]
    run_default.__annotations__ = {"ctx": typer.Context, **{n: p.annotation for n, p in sig.parameters.items()}}
    run_default.__doc__ = default.__doc__
    group.callback(invoke_without_command=True)(run_default)
    group.command("serve")(bench_serve)
    return group
