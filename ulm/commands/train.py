"""`ulm train`: pre-train a µLM model on a dataset from `ulm data build` (see ulm/train/)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from ulm.commands.generate import fail, user_errors

DATA = typer.Option(..., "--data", "-d", help="A dataset directory from `ulm data build`.")
OUT = typer.Option(..., "--out", "-o", help="Run directory: checkpoints, logs, the trained model.")
CONFIG = typer.Option(None, "--config", "-c", help="JSON or TOML file: preset, [model] and [train] tables.")
SETS = typer.Option(None, "--set", help="Any field: model.FIELD=VALUE or train.FIELD=VALUE (repeatable; VALUE as "
                    "JSON, e.g. --set train.betas=[0.9,0.99]).")


def _rope_scaling(spec: str) -> dict[str, Any]:
    """KIND[:FACTOR[:ORIGINAL_LEN]] → a RopeScaling dict."""
    parts = spec.split(":")
    try:
        out: dict[str, Any] = {"kind": parts[0]}
        if len(parts) > 1:
            out["factor"] = float(parts[1])
        if len(parts) > 2:
            out["original_max_seq_len"] = int(parts[2])
    except ValueError:
        raise typer.BadParameter(f"'{spec}': expected KIND[:FACTOR[:ORIGINAL_LEN]], e.g. linear:2 or yarn:4:2048",
                                 param_hint="--rope-scaling") from None
    if len(parts) > 3:
        raise typer.BadParameter(f"'{spec}': expected KIND[:FACTOR[:ORIGINAL_LEN]]", param_hint="--rope-scaling")
    return out


def _overrides(model_flags: dict[str, Any], train_flags: dict[str, Any], rope_scaling: str | None,
               sets: list[str]) -> dict[str, dict[str, Any]]:
    from ulm.train.config import parse_set

    overrides: dict[str, dict[str, Any]] = {
        "model": {k: v for k, v in model_flags.items() if v is not None},
        "train": {k: v for k, v in train_flags.items() if v is not None},
    }
    if rope_scaling is not None:
        overrides["model"]["rope_scaling"] = _rope_scaling(rope_scaling)
    for section, values in parse_set(sets).items():
        overrides[section].update(values)
    return overrides


def _base(preset_name: str | None, file_data: dict[str, Any], init: str | None) -> Any:
    from ulm.train.config import RunConfig, TrainConfig
    from ulm.train.init import init_config
    from ulm.train.presets import preset

    name = preset_name or file_data.get("preset")
    if init is not None:
        train = preset(name).train if name else TrainConfig()
        return RunConfig(init_config(init), train, name)
    if name is None:
        fail("name a preset (--preset tiny|small|smollm2-135m|smollm2-360m) or a --config file with one", 2)
    return preset(name)


def _summary(result: dict[str, Any], data: Path) -> str:
    val = result["val_loss"]
    head = f"{result['step']}/{result['steps']} steps"
    speed = f"{result['tokens_per_s']:,.0f} tokens/s"
    if result["mfu"] == result["mfu"]:
        speed += f", MFU {100 * result['mfu']:.1f}%"
    val_text = f", val loss {val:.4f}" if val is not None else ""
    if result["stopped"]:
        return (f"stopped after {head} ({result['stopped']}){val_text}; {speed}. Continue with:\n"
                f"  ulm train --resume --data {data} --out {result['out']}")
    return f"trained {head}{val_text}; {speed} → {result['out']} (ulm chat -m {result['out']})"


def train(
    data: Path = DATA,
    out: Path = OUT,
    preset_name: str = typer.Option(None, "--preset", "-p", help="tiny (CPU, seconds), small (CPU, minutes), "
                                    "smollm2-135m, smollm2-360m (GPU)."),
    config: Path = CONFIG,
    init: str = typer.Option(None, "--init", help="Start from this model's weights and shape (a µLM checkpoint, "
                             "HF directory or .gguf), e.g. the output of `ulm convert gqa`."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest checkpoint."),
    steps: int = typer.Option(None, "--steps", min=1, help="Optimiser steps of the whole run."),
    seq_len: int = typer.Option(None, "--seq-len", min=1, help="Tokens per sequence."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Sequences per step over all ranks "
                                   "(the global batch; accumulation makes up the rest)."),
    micro_batch: int = typer.Option(None, "--micro-batch", min=1, help="Sequences per forward pass on one rank."),
    lr: float = typer.Option(None, "--lr", min=0.0, help="Peak learning rate."),
    warmup: int = typer.Option(None, "--warmup", min=0, help="Warm-up steps."),
    schedule: str = typer.Option(None, "--schedule", help="cosine, wsd or constant (after warm-up)."),
    weight_decay: float = typer.Option(None, "--weight-decay", min=0.0, help="AdamW decay of the matrices."),
    grad_clip: float = typer.Option(None, "--grad-clip", min=0.0, help="Clip the gradient norm (0 = off)."),
    dtype: str = typer.Option(None, "--dtype", help="auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16."),
    compile_model: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on GPU)."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda."),
    masked: bool = typer.Option(None, "--masked/--all-tokens", help="Train only on the dataset's masked tokens "
                                "(the assistant's, in chats) or on every token (the default)."),
    eval_every: int = typer.Option(None, "--eval-every", min=0, help="Validate every N steps (0 = at the end)."),
    save_every: int = typer.Option(None, "--save-every", min=0, help="Checkpoint every N steps (0 = at the end)."),
    log_every: int = typer.Option(None, "--log-every", min=1, help="Log every N steps."),
    seed: int = typer.Option(None, "--seed", help="Seed of the weight init and the data order."),
    n_layers: int = typer.Option(None, "--layers", min=1, help="Model: decoder layers."),
    dim: int = typer.Option(None, "--dim", min=1, help="Model: residual width."),
    n_heads: int = typer.Option(None, "--heads", min=1, help="Model: query heads."),
    n_kv_heads: int = typer.Option(None, "--kv-heads", min=1, help="Model: key/value heads (GQA groups)."),
    hidden_dim: int = typer.Option(None, "--hidden-dim", min=1, help="Model: MLP width."),
    rope_theta: float = typer.Option(None, "--rope-theta", help="Model: RoPE base."),
    rope_scaling: str = typer.Option(None, "--rope-scaling", help="Model: KIND[:FACTOR[:ORIGINAL_LEN]] with KIND "
                                     "none, linear, ntk, yarn or llama3."),
    norm: str = typer.Option(None, "--norm", help="Model: rmsnorm or layernorm."),
    mlp: str = typer.Option(None, "--mlp", help="Model: swiglu or gelu."),
    tie_embeddings: bool = typer.Option(None, "--tie/--no-tie", help="Model: share the embedding and LM head."),
    qkv_bias: bool = typer.Option(None, "--qkv-bias/--no-qkv-bias", help="Model: biases on q, k and v."),
    max_seq_len: int = typer.Option(None, "--context", min=1, help="Model: context length (rotary tables)."),
    sets: list[str] = SETS,
    stop_at: int = typer.Option(None, "--stop-at", min=1, help="Stop after this step with a checkpoint."),
    time_limit: float = typer.Option(None, "--time-limit", min=1.0, help="Stop after this many seconds, with a "
                                     "checkpoint (e.g. to fit a time-limited machine)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the assembled config as JSON and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines (the logs are still written)."),
) -> None:
    """Pre-train a model on µLM's own components; the same command runs under torchrun for DDP.

    The run config is a preset, then a --config file, then flags (--set reaches every field). AdamW with
    decay groups, warm-up then cosine or WSD, gradient clipping and accumulation (--batch-size is the global
    batch; --micro-batch what one forward holds). Checkpoints hold the model (loadable by `ulm.load`, `ulm chat
    -m OUT`), the optimiser state, the data position and the RNG states: --resume continues a run exactly.
    Logs: OUT/metrics.jsonl, OUT/tensorboard/, OUT/loss.png; tokens/s and MFU on the console.

    \b
    Examples:
      ulm data build /usr/lib/python3.11/json --out data/json
      ulm train --preset tiny --data data/json --out runs/tiny --steps 200
      ulm train --config run.toml --data data/mix --out runs/r1 --set train.lr=1e-3
      ulm train --resume --data data/mix --out runs/r1 --steps 4000
      torchrun --standalone --nproc_per_node 2 -m ulm train --preset smollm2-135m --data data/mix --out runs/ddp
      ulm convert gqa runs/r1 --kv-heads 2 --out runs/r1-gqa && ulm train --init runs/r1-gqa --preset tiny ...
    """
    from ulm.train.config import assemble, read_config_file
    from ulm.train.trainer import RunSpec, run_training

    model_flags = dict(n_layers=n_layers, dim=dim, n_heads=n_heads, n_kv_heads=n_kv_heads, hidden_dim=hidden_dim,
                       rope_theta=rope_theta, norm=norm, mlp=mlp, tie_embeddings=tie_embeddings, qkv_bias=qkv_bias,
                       max_seq_len=max_seq_len)
    train_flags = dict(steps=steps, seq_len=seq_len, batch_size=batch_size, micro_batch=micro_batch, lr=lr,
                       warmup_steps=warmup, schedule=schedule, weight_decay=weight_decay, grad_clip=grad_clip,
                       dtype=dtype, compile=compile_model, device=device, use_mask=masked, eval_every=eval_every,
                       save_every=save_every, log_every=log_every, seed=seed)
    with user_errors():
        overrides = _overrides(model_flags, train_flags, rope_scaling, sets or [])
        if resume or init:
            given = sorted(k for k in overrides["model"])
            if given:
                fail(f"{'--resume' if resume else '--init'} takes the model's shape from the checkpoint; "
                     f"drop {', '.join(given)}", 2)
        if resume:
            if preset_name or config or init:
                fail("--resume continues the run in --out as it was configured; drop --preset/--config/--init", 2)
            spec = RunSpec(data=data, out=out, resume=True, resume_changes=overrides["train"], stop_at=stop_at,
                           time_limit_s=time_limit, quiet=quiet)
        else:
            file_data = read_config_file(config) if config else {}
            run = assemble(_base(preset_name, file_data, init), file_data, overrides)
            if print_config:
                typer.echo(json.dumps(run.to_dict(), indent=2))
                return
            spec = RunSpec(data=data, out=out, run=run, init=init, stop_at=stop_at, time_limit_s=time_limit,
                           quiet=quiet)
        result = run_training(spec)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        typer.echo(_summary(result, data))
