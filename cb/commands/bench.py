"""`cb bench`: cb's benchmarks. Alone (= `cb bench overhead`), start-up and round-trip overhead next to their
anchors (cb/bench.py); `cb bench edits`, the edit-quality benchmark (cb/editbench/)."""

from __future__ import annotations

from typing import Annotated

import typer

from cb import exits
from cb.commands import common

app = typer.Typer(
    name="bench",
    help="""cb's benchmarks.

\b
  cb bench                          start-up and round-trip overhead (= cb bench overhead)
  cb bench edits --split dev        edit quality: tasks through cb's real path, per tier
  cb bench edits --list             the edit corpus: tasks per tier and split (no server needed)""",
    context_settings={"help_option_names": ["-h", "--help"]},
)

RunsOpt = Annotated[int, typer.Option("--runs", "-n", help="Runs of each measurement.")]
RoundTripOpt = Annotated[bool, typer.Option("--round-trip/--no-round-trip", help="Also time one-shot answers "
                                            "against the (started if needed) model server.")]


def _overhead(runs: int, round_trip: bool) -> None:
    from cb import bench as b
    from cb.chat import describe_error

    try:
        typer.echo(b.run(runs, round_trip))
    except Exception as exc:  # one line, never a traceback
        common.fail(describe_error(exc))


@app.callback(invoke_without_command=True)
def bench(ctx: typer.Context, runs: RunsOpt = 10, round_trip: RoundTripOpt = True) -> None:
    """cb's benchmarks; with no sub-command, the overhead benchmark (its options work here too)."""
    if ctx.invoked_subcommand is None:
        _overhead(runs, round_trip)


@app.command("overhead")
def overhead(runs: RunsOpt = 10, round_trip: RoundTripOpt = True) -> None:
    """Time `cb --help` against a minimal Typer app, and `cb "hi"` against the server's own TTFT."""
    _overhead(runs, round_trip)


@app.command("edits")
def edits(
    split: Annotated[str, typer.Option("--split", help="heldout, dev or all. Tune prompts and formats on dev "
                                       "only; report held-out figures, which no choice was tuned on.")] = "dev",
    tier: Annotated[list[str] | None, typer.Option("--tier", help="Only this tier (repeat for more): literal, "
                                                   "rename, import, function, delete, rewrite, bugfix, two-file, "
                                                   "crlf, tabs, no-eol.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most N tasks, taken across the tiers in turn "
                                       "(0 = all).")] = 0,
    model: common.ModelOpt = None,
    base_url: common.BaseUrlOpt = None,
    api_key: common.ApiKeyOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most tokens per answer.")] = 512,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="Sampling temperature.")] = 0.0,
    grammar: common.GrammarOpt = None,
    retries: Annotated[int | None, typer.Option("--retries", help="Repair rounds per task: when an answer's edits "
                                                "cannot be applied, the errors go back to the model, as cb ask "
                                                "does (config key: edit_retries; 0 = off).",
                                                show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the table: per-tier figures "
                                          "and every task (answer, verdict, reason, time, tokens).")] = False,
    out_file: Annotated[str | None, typer.Option("--out", help="Also write the JSON to this file.",
                                                 show_default=False)] = None,
    list_only: Annotated[bool, typer.Option("--list", help="Print the selected tasks per tier and split, and "
                                            "exit (no server needed).")] = False,
) -> None:
    """Measure edit quality: each task's files are shown to the model as cb shows them, the request is the
    user's message, and the answer is parsed, planned and applied in a fresh temp copy, then checked.

    Per tier it prints the tasks, well-formed % (the answer parsed into edits), applicable % (they applied),
    correct % (the check passed), escapes (writes outside the copy: must be 0), repaired (tasks whose first
    answer failed and went back to the model), and the median seconds and tokens per task (all rounds). The
    server is the configured one, or the local `ulm serve` (started if needed). Edits are asked for as cb
    asks for them: with a grammar of the open files against ulm serve (--grammar auto), else plainly (or
    with tool calls where the server takes them); the header says which.

    \b
    cb bench edits --split dev --limit 20
    cb bench edits --split heldout --grammar off --retries 0     the same tasks without grammar or repair
    cb bench edits --split heldout --tier rename --tier two-file --json --out rename.json
    cb bench edits --base-url http://127.0.0.1:8080/v1 --model qwen2.5-coder
    """
    import json
    import sys

    from cb.editbench import corpus, report, run, score, wiring
    from cb.render import Out

    out = Out()
    try:
        everything = corpus.load()
        tasks = corpus.select(everything, split, tier or (), limit)
    except ValueError as exc:
        common.fail(str(exc), exits.EXIT_USAGE)
    if list_only:
        report.corpus_table(out, corpus.counts(tasks), corpus.fingerprint(everything))
        return
    if not tasks:
        common.fail("no tasks match that selection", exits.EXIT_USAGE)
    settings = common.settings(model=model, base_url=base_url, api_key=api_key, temperature=temperature,
                               max_tokens=max_tokens, grammar=grammar, edit_retries=retries)
    from cb.chat import describe_error

    try:
        conn = run.connect(settings)
    except KeyboardInterrupt:
        raise typer.Exit(exits.EXIT_INTERRUPTED) from None
    except Exception as exc:  # one line, never a traceback
        common.fail(describe_error(exc) if not isinstance(exc, run.BenchError) else str(exc))
    try:
        mode = wiring.edit_mode(settings.grammar, conn)
        with report.Progress(out, len(tasks)) as progress:
            results = run.run_tasks(tasks, conn, max_tokens=max_tokens, temperature=temperature, mode=mode,
                                    retries=settings.edit_retries, starting=progress.start, progress=progress.step)
    except KeyboardInterrupt:
        raise typer.Exit(exits.EXIT_INTERRUPTED) from None
    except Exception as exc:
        common.fail(describe_error(exc) if not isinstance(exc, run.BenchError) else str(exc))
    finally:
        conn.close()
    rows = score.tier_rows(results)
    meta = {"model": conn.backend.model, "base_url": conn.backend.base_url, "max_tokens": max_tokens,
            "temperature": temperature, "grammar": settings.grammar, "edit_mode": mode,
            "server": conn.backend.features().server or "other", "retries": settings.edit_retries,
            "tiers_selected": list(tier or ()), "limit": limit,
            "corpus": {"tasks": len(everything), "fingerprint": corpus.fingerprint(everything)}}
    data = report.as_json(split, rows, results, meta)
    if out_file:
        try:
            with open(out_file, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
        except OSError as exc:
            common.fail(f"cannot write {out_file}: {exc.strerror or exc}")
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        report.results_table(out, split, rows, meta)
