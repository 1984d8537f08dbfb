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
    model: str = typer.Option(None, "--model", "-m", help="Short name, .gguf file or HF directory (default "
                              "smollm2-135m). With --device cuda: a shape to build, smollm2-135m or "
                              "qwen2.5-coder-1.5b (default both)."),
    device: str = typer.Option("cpu", help="cpu, or cuda: µLM's CUDA path (bf16, int8, int4, compiled) beside HF "
                               "transformers (dynamic and static cache) on random-weight models of real shapes."),
    engines: str = typer.Option("ulm,hf,llama_cpp", "--engines", "-e",
                                help="Comma-separated: ulm (fast + exact rows), hf (bf16 + fp32 rows), llama_cpp."),
    threads: int = typer.Option(2, "--threads", "-t", min=1, help="CPU threads for every engine."),
    repeats: int = typer.Option(3, "--repeats", "-r", min=1, help="Timed runs per engine; medians are reported."),
    new_tokens: int = typer.Option(128, "--new-tokens", min=2, help="Tokens to decode after the 64-token prompt."),
    accuracy: bool = typer.Option(True, "--accuracy/--no-accuracy",
                                  help="Compute the fast mode's top-1 agreement with the exact mode (256 tokens)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object keyed by engine instead of a table."),
    compile: bool = typer.Option(True, "--compile/--no-compile", help="With --device cuda: also time µLM with "
                                 "torch.compile under its CUDA graphs (batch 1; compiling takes a minute or so)."),
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

        ulm bench --device cuda --model qwen2.5-coder-1.5b
    """
    if device == "cuda":
        _bench_cuda(model, repeats, new_tokens, compile, as_json)
        return
    if device != "cpu":
        raise typer.BadParameter(f"'{device}': cpu or cuda", param_hint="--device")
    model = model or "smollm2-135m"
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


def _bench_cuda(model: str | None, repeats: int, new_tokens: int, compile: bool, as_json: bool) -> None:
    from ulm.bench.cuda import CONFIGS, render_cuda, run_cuda_bench

    if model is not None and model not in CONFIGS:
        raise typer.BadParameter(f"'{model}': with --device cuda, one of {', '.join(CONFIGS)}", param_hint="--model")
    configs = CONFIGS if model is None else (model,)
    try:
        results = run_cuda_bench(configs, new_tokens, repeats, compile,
                                 progress=lambda line: typer.echo(f"ulm bench: {line}", err=True))
    except RuntimeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(results, indent=2) if as_json else render_cuda(results))
