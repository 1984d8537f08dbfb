"""`ulm bench`: load time, prefill and decode speed, TTFT and peak RSS of µLM (fast and exact modes) next to
HF transformers (bf16, fp32) and llama.cpp, measured in one run, each engine in its own process."""

from __future__ import annotations

import json

import typer

from ulm.bench.engines import GROUPS


def _engines(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in GROUPS]
    if unknown or not names:
        raise typer.BadParameter(f"unknown engine(s) {', '.join(unknown) or '(none)'}; choose from "
                                 f"{', '.join(GROUPS)}", param_hint="--engines")
    return [e for n in names for e in GROUPS[n]]


def bench(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Short name, .gguf file or HF directory."),
    engines: str = typer.Option("ulm,hf,llama_cpp", "--engines", "-e",
                                help="Comma-separated: ulm (fast + exact rows), hf (bf16 + fp32 rows), llama_cpp."),
    threads: int = typer.Option(2, "--threads", "-t", min=1, help="CPU threads for every engine."),
    repeats: int = typer.Option(3, "--repeats", "-r", min=1, help="Timed runs per engine; medians are reported."),
    new_tokens: int = typer.Option(128, "--new-tokens", min=2, help="Tokens to decode after the 64-token prompt."),
    accuracy: bool = typer.Option(True, "--accuracy/--no-accuracy",
                                  help="Compute the fast mode's top-1 agreement with the exact mode (256 tokens)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object keyed by engine instead of a table."),
) -> None:
    """Benchmark µLM against HF transformers and llama.cpp on the same model, prompt and thread count.

    Measures load time, prefill tokens/s over 512 tokens, decode tokens/s for 128 new tokens after a 64-token
    prompt, time to first token and peak RSS; greedy decoding on the same token ids for every engine. The
    --repeats runs are rounds in which every engine runs once in a fresh process (a noisy spell hits them
    all alike); figures are medians over the rounds. Progress goes to stderr, results to stdout. llama.cpp
    runs when llama-cpp-python is installed (`pip install llama-cpp-python`).

    Examples:

        ulm bench

        ulm bench --engines ulm,llama_cpp --repeats 5 --json
    """
    from ulm.bench.report import render
    from ulm.bench.run import run_bench

    names = _engines(engines)
    results = run_bench(model, names, threads, repeats, new_tokens, accuracy=accuracy)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        typer.echo(render(results, model=model, threads=threads, repeats=repeats, new_tokens=new_tokens))
    if all("error" in r for r in results.values()):
        raise typer.Exit(1)
