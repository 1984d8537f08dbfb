"""`ulm bench train`: tokens/s and MFU of `ulm train`'s step next to HF transformers training the same model
(see ulm/bench/train.py)."""

from __future__ import annotations

import json

import typer


def bench_train(
    preset_name: str = typer.Option(None, "--preset", "-p", help="Model preset (default: tiny on CPU, "
                                    "smollm2-135m on a GPU)."),
    seq_len: int = typer.Option(None, "--seq-len", min=1, help="Tokens per sequence (default: 256 CPU, 1024 GPU)."),
    batch: int = typer.Option(None, "--batch", min=1, help="Sequences per step (default: 8 CPU, 16 GPU)."),
    steps: int = typer.Option(None, "--steps", min=1, help="Timed steps per engine (default: 5 CPU, 20 GPU)."),
    warmup: int = typer.Option(None, "--warmup", min=1, help="Untimed steps first, compilation included "
                               "(default: 2 CPU, 8 GPU)."),
    engines: str = typer.Option(None, "--engines", "-e", help="Comma-separated: ulm (compiled), ulm-eager, hf "
                                "(eager), hf-compile (default: ulm-eager,hf on CPU; ulm,hf,hf-compile on a GPU)."),
    rounds: int = typer.Option(1, "--rounds", "-r", min=1, help="Rounds over the engines (each runs once per "
                               "round); each engine's median round is reported."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 autocast on GPU, fp32 on CPU), fp32, bf16."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Training throughput of µLM beside HF transformers: the same config, weights, batch, optimiser and step.

    Prints tokens/s, MFU, step time and the ratio to HF eager for each engine, and each engine's first-step
    loss (equal across engines: they train the same model). Progress goes to stderr.

    \b
    Examples:
      ulm bench train
      ulm bench train --preset smollm2-135m --seq-len 1024 --batch 16 --dtype bf16
      ulm bench train --engines ulm,ulm-eager,hf,hf-compile --json
    """
    import torch

    from ulm.bench.train import ENGINES, render, run_train_bench
    from ulm.commands.generate import user_errors

    gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    names = [e.strip() for e in (engines or ("ulm,hf,hf-compile" if gpu else "ulm-eager,hf")).split(",") if e.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise typer.BadParameter(f"unknown engine(s) {', '.join(unknown) or '(none)'}; choose from "
                                 f"{', '.join(ENGINES)}", param_hint="--engines")
    with user_errors():
        report = run_train_bench(preset_name or ("smollm2-135m" if gpu else "tiny"), seq_len or (1024 if gpu else 256),
                                 batch or (16 if gpu else 8), steps or (20 if gpu else 5), warmup or (8 if gpu else 2),
                                 names, device, dtype, rounds, echo=lambda msg: typer.echo(msg, err=True))
    typer.echo(json.dumps(report, indent=2) if as_json else render(report))
