"""`ulm bench train`: training throughput (tokens/s) and MFU of `ulm train`'s step beside HF transformers
training the same model, measured in one run.

Every engine trains the same config (a preset of ulm/train/presets.py) from the same weights (µLM's seeded
init, copied into LlamaForCausalLM / Qwen2ForCausalLM under HF's names) on the same batch of token ids, with
the same step: `ulm.train.step.optimizer_step` (LossModule, AdamW with the same decay groups, clipping, bf16
autocast when asked). So the engines differ only in the model's own code:

    ulm          µLM's Transformer, torch.compile'd (`ulm train`'s GPU default)
    ulm-eager    µLM's Transformer without compile (`ulm train`'s CPU default)
    hf           transformers' model, eager (its SDPA attention)
    hf-compile   transformers' model, torch.compile'd

With `rounds` > 1 every round runs each engine once, so a noisy spell of a shared machine hits them alike; each
engine's row is its median round. Each engine runs `warmup` untimed steps (compilation happens in the first,
whose time is reported), then `steps` timed ones, the device synchronised after each; the figures are
medians over the timed steps: tokens/s = batch · seq_len / step time; MFU as ulm/train/flops.py defines it
(6·N + attention FLOPs per token against the device's peak). The first step's loss of every engine is
reported too: equal weights and batch give equal losses, which shows they train the same model.

    python -m ulm bench train                                   # CPU: tiny preset, fp32, small batch
    python -m ulm bench train --preset smollm2-135m --seq-len 1024 --batch 16 --dtype bf16   # a GPU
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from ulm.config import ModelConfig
from ulm.train.flops import flops_per_token, mfu, peak_flops
from ulm.train.optim import build_optimizer
from ulm.train.presets import preset
from ulm.train.step import LossModule, optimizer_step

ENGINES = ("ulm", "ulm-eager", "hf", "hf-compile")
BASELINE = "hf"


def hf_model(config: ModelConfig, canonical: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
    """transformers' model of `config` holding the canonical weights (fp32, train mode, SDPA attention)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ulm.convert.hf_config import hf_config_dict
    from ulm.convert.names import hf_name

    data = hf_config_dict(config)
    hf_config = AutoConfig.for_model(data.pop("model_type"), **data)
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa", dtype=torch.float32)
    missing, unexpected = model.load_state_dict({hf_name(k): v for k, v in canonical.items()}, strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise RuntimeError(f"HF model does not take the weights: missing {missing}, unexpected {unexpected}")
    return model.to(device).train()


def _build(engine: str, config: ModelConfig, device: torch.device, seed: int) -> torch.nn.Module:
    from ulm.model import to_canonical
    from ulm.train.init import new_model

    model = new_model(config, device, seed=seed)
    if engine.startswith("hf"):
        canonical = {k: v.detach().cpu() for k, v in to_canonical(model).items()}
        del model
        return hf_model(config, canonical, device)
    return model


def bench_engine(engine: str, config: ModelConfig, batch: torch.Tensor, device: torch.device, bf16: bool,
                 steps: int, warmup: int, seed: int = 0) -> dict[str, Any]:
    """Train `engine` on `batch` (ids [B, T + 1]) for warmup + steps steps; its figures."""
    train = preset("tiny").train.with_(lr=1e-4, warmup_steps=0)
    model = _build(engine, config, device, seed)
    module: torch.nn.Module = LossModule(model)
    if engine in ("ulm", "hf-compile"):
        module = torch.compile(module)
    optimizer = build_optimizer(model, train, device)
    micro = [(batch[:, :-1].contiguous(), batch[:, 1:].contiguous())]
    n_targets = batch.shape[0] * (batch.shape[1] - 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    args = (optimizer, micro, n_targets, 1, train.lr, train.grad_clip, device, bf16)
    start = time.perf_counter()
    first_loss = float(optimizer_step(module, *args)[0].item()) / n_targets  # compilation happens here
    first_s = time.perf_counter() - start
    for _ in range(max(0, warmup - 1)):
        optimizer_step(module, *args)
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer_step(module, *args)
        _sync(device)
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    result = {"engine": engine, "step_ms": 1000 * step_s, "tokens_per_s": n_targets / step_s,
              "first_loss": first_loss, "first_step_s": first_s}
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del module, optimizer, model, args
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_train_bench(preset_name: str, seq_len: int, batch: int, steps: int, warmup: int, engines: Sequence[str],
                    device_name: str = "auto", dtype: str = "auto", rounds: int = 1,
                    echo: Any = None) -> dict[str, Any]:
    """Every engine's figures (see the module docstring), with the run's settings."""
    from ulm.train.distributed import pick_device

    device = pick_device(device_name)
    bf16 = dtype == "bf16" or (dtype == "auto" and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config = preset(preset_name).model
    ids = torch.randint(0, config.vocab_size, (batch, seq_len + 1), generator=torch.Generator().manual_seed(0))
    fpt = flops_per_token(config, seq_len)
    peak, peak_source = peak_flops(device, bf16)
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in engines}
    for round_ in range(rounds):
        for engine in engines:
            if echo is not None:
                echo(f"round {round_ + 1}/{rounds}, {engine}: {warmup} warm-up + {steps} timed steps ...")
            runs[engine].append(bench_engine(engine, config, ids.to(device), device, bf16, steps, warmup))
    rows = []
    for results in runs.values():
        row = dict(sorted(results, key=lambda r: r["tokens_per_s"])[len(results) // 2])  # the median round
        row["rounds_tokens_per_s"] = [r["tokens_per_s"] for r in results]
        row["mfu"] = mfu(row["tokens_per_s"], fpt, peak)
        rows.append(row)
    base = next((r for r in rows if r["engine"] == BASELINE), None)
    for row in rows:
        row["vs_hf"] = row["tokens_per_s"] / base["tokens_per_s"] if base else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {"preset": preset_name, "params": config.n_params(), "seq_len": seq_len, "batch": batch, "steps": steps,
            "warmup": warmup, "rounds": rounds, "device": name, "bf16": bf16, "flops_per_token": fpt,
            "peak_flops": peak, "peak_source": peak_source, "torch": torch.__version__, "results": rows}


def _flops(per_s: float) -> str:
    return f"{per_s / 1e12:.1f} TFLOP/s" if per_s >= 1e12 else f"{per_s / 1e9:.0f} GFLOP/s"


def render(report: dict[str, Any]) -> str:
    """The results as a text table."""
    head = (f"ulm bench train: {report['preset']} ({report['params'] / 1e6:.1f} M params), batch {report['batch']} × "
            f"seq {report['seq_len']}, {'bf16 autocast' if report['bf16'] else 'fp32'}, {report['device']}, torch "
            f"{report['torch']}\nMFU against {_flops(report['peak_flops'])} ({report['peak_source']}); "
            f"{report['flops_per_token'] / 1e6:.1f} MFLOP per token; medians of {report['steps']} steps after "
            f"{report['warmup']} warm-up")
    if report["rounds"] > 1:
        head += f"; each engine's median of {report['rounds']} interleaved rounds"
    cols = ("engine", "tokens/s", "MFU", "step ms", "vs hf", "first loss", "1st step s", "peak GiB")
    lines = [head, "", "  ".join(f"{c:>11}" for c in cols)]
    for r in report["results"]:
        ratio = f"{r['vs_hf']:.2f}×" if r["vs_hf"] is not None else "-"
        memory = f"{r['peak_memory_gib']:.1f}" if "peak_memory_gib" in r else "-"
        cells = (r["engine"], f"{r['tokens_per_s']:,.0f}", f"{100 * r['mfu']:.1f}%", f"{r['step_ms']:.1f}", ratio,
                 f"{r['first_loss']:.4f}", f"{r['first_step_s']:.1f}", memory)
        lines.append("  ".join(f"{c:>11}" for c in cells))
    return "\n".join(lines)
