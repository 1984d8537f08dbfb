"""`ulm bench --device cuda`: µLM's CUDA path beside HF transformers on random-weight models of real shapes.

Weights do not change speed, so each config (`ulm.config.PRESETS`: smollm2-135m, qwen2.5-coder-1.5b) is
built once with HF transformers' random init (seeded, bf16), and µLM loads those same weights (HF names →
canonical ones), which also lets the run check that both engines pick the same greedy tokens.

Per config, in one process, one engine after the other (each one's memory freed before the next):
- µLM rows: bf16 and int4 weights (`ulm.cuda.weight_only`) with decode steps through CUDA graphs
  (`UlmBackend` on CUDA, the server's path), and bf16 and int8 with torch.compile under the graphs
  (`ulm serve --compile`; these decode at batch 1 only, since every batch bucket compiles anew);
- HF rows: `generate` with its default dynamic cache and with `cache_implementation="static"`.
Figures: batch-1 decode tok/s for `new_tokens` tokens after a 64-token prompt, prefill tok/s at 2048 tokens,
batched decode tok/s at batch 8 and 32 (all rows decoding), peak GPU memory (allocated), and for µLM's
quantised rows their cost under teacher forcing on a fixed random token text: top-1 agreement with bf16 and
the mean absolute logit error relative to bf16's logit spread. Times are wall clock around
`torch.cuda.synchronize()`, medians of `repeats` runs after a warm-up run (which captures the graphs or
compiles). µLM's decode includes what a server step does on the host: the token ids copied in, greedy argmax
on the GPU and the tokens read back (the one host sync per step).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ulm.config import PRESETS, ModelConfig
from ulm.engine.slots import common_prefix

CONFIGS = ("smollm2-135m", "qwen2.5-coder-1.5b")
PROMPT = 64
PREFILL = 2048
BATCHES = (8, 32)
ACCURACY_TOKENS = 256
# (label, weight scheme, torch.compile under the graphs); int8 is only worth it compiled (ulm.cuda.weight_only)
ULM_ROWS = (("ulm bf16", None, False), ("ulm int4", "int4", False), ("ulm bf16 + compile", None, True),
            ("ulm int8 + compile", "int8", True))


def _timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def hf_model(name: str, seed: int = 0) -> Any:
    """HF transformers' causal LM of a preset's shape, random weights (seeded), bf16, on the GPU."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ulm.convert.hf_config import hf_config_dict

    data = hf_config_dict(PRESETS[name], strict=False, torch_dtype="bfloat16")
    hf_config = AutoConfig.for_model(**data)
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(hf_config, torch_dtype=torch.bfloat16)
    return model.eval()


def ulm_backend(name: str, state: dict[str, torch.Tensor], quant: str | None, compile: bool) -> Any:
    """µLM's backend on the given weights (HF names, on the CPU): bf16 on the GPU, `quant` linears if asked."""
    from ulm.cuda.weight_only import quantize_for_cuda
    from ulm.engine.backend import UlmBackend
    from ulm.loading.hf import canonical_name
    from ulm.model import build_model

    config = PRESETS[name]
    canonical = {canonical_name(k): v for k, v in state.items()}
    if config.tie_embeddings:
        canonical.pop("lm_head.weight", None)
    net = build_model(config, canonical, torch.bfloat16, "cuda")
    if quant is not None:
        quantize_for_cuda(net, quant)
    return UlmBackend(net, None, name, compile=compile)


def _ulm_decode(backend: Any, prompts: torch.Tensor, new_tokens: int) -> Callable[[], list[list[int]]]:
    """A run: prefill every row's prompt in one forward, then greedy steps of all rows; the tokens."""
    B, T = prompts.shape
    ids = prompts.tolist()

    def run() -> list[list[int]]:
        rows = list(range(B))
        logits = backend.forward(ids, rows, [0] * B)  # [B, V]
        out: list[list[int]] = [[] for _ in rows]
        for i in range(new_tokens):
            tokens = logits.argmax(-1).tolist()  # the step's one host sync
            for row, t in zip(out, tokens, strict=True):
                row.append(t)
            if i + 1 < new_tokens:
                logits = backend.forward([[t] for t in tokens], rows, [T + i] * B)
        return out

    return run


def _decode_rate(make: Callable[[int], Callable[[], Any]], rows: int, new_tokens: int, repeats: int) -> float:
    """Tokens/s of the decode steps alone: a run of `new_tokens` less a run of 1 (the prefill and first token)."""
    full, first = make(new_tokens), make(1)
    return rows * (new_tokens - 1) / max(_timed(full, repeats) - _timed(first, repeats), 1e-9)


def _ulm_row(name: str, state: dict[str, torch.Tensor], quant: str | None, compile: bool, new_tokens: int,
             repeats: int, batches: tuple[int, ...]) -> tuple[dict[str, Any], list[int], torch.Tensor]:
    """A µLM row's figures, its greedy tokens and its teacher-forced logits of the accuracy text."""
    config: ModelConfig = PRESETS[name]
    gen = torch.Generator().manual_seed(1)
    torch.cuda.empty_cache()
    backend = ulm_backend(name, state, quant, compile)
    torch.cuda.reset_peak_memory_stats()  # what serving holds: not the bf16 weights a quantised row started from
    row: dict[str, Any] = {}
    prompt = torch.randint(0, config.vocab_size, (1, PROMPT), generator=gen)
    backend.allocate(1, PROMPT + new_tokens)
    tokens = _ulm_decode(backend, prompt, new_tokens)()[0]
    row["decode_tok_s"] = _decode_rate(lambda n: _ulm_decode(backend, prompt, n), 1, new_tokens, repeats)
    row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20  # weights, cache, graphs: batch 1
    row["graphs"] = len(backend.graphs.captured)
    backend.allocate(1, PREFILL)
    prefill_ids = torch.randint(0, config.vocab_size, (1, PREFILL), generator=gen).tolist()
    row["prefill_tok_s"] = PREFILL / _timed(lambda: backend.forward(prefill_ids, [0], [0]), repeats)
    for B in batches:
        prompts = torch.randint(0, config.vocab_size, (B, PROMPT), generator=gen)
        backend.allocate(B, PROMPT + new_tokens)
        row[f"batch{B}_tok_s"] = _decode_rate(lambda n, p=prompts: _ulm_decode(backend, p, n), B, new_tokens,
                                              repeats)
    text = torch.randint(0, config.vocab_size, (1, ACCURACY_TOKENS), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        logits = backend.net(text.cuda()).float()[0]  # [T, V]: teacher forcing, no cache
    return row, tokens, logits


def _hf_generate(hf: Any, prompts: torch.Tensor, new_tokens: int, static: bool) -> Callable[[], Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
                              "pad_token_id": 0}
    if static:
        kwargs["cache_implementation"] = "static"

    def run() -> Any:
        with torch.inference_mode():
            return hf.generate(prompts, attention_mask=torch.ones_like(prompts), **kwargs)

    return run


def _hf_row(hf: Any, name: str, static: bool, new_tokens: int, repeats: int,
            batches: tuple[int, ...]) -> tuple[dict[str, Any], list[int]]:
    config: ModelConfig = PRESETS[name]
    gen = torch.Generator().manual_seed(1)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    row: dict[str, Any] = {}
    prompt = torch.randint(0, config.vocab_size, (1, PROMPT), generator=gen).cuda()
    tokens = _hf_generate(hf, prompt, new_tokens, static)()[0, PROMPT:].tolist()
    row["decode_tok_s"] = _decode_rate(lambda n: _hf_generate(hf, prompt, n, static), 1, new_tokens, repeats)
    row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    prefill_ids = torch.randint(0, config.vocab_size, (1, PREFILL), generator=gen).cuda()
    with torch.inference_mode():
        row["prefill_tok_s"] = PREFILL / _timed(lambda: hf(prefill_ids, logits_to_keep=1), repeats)
    for B in batches:
        prompts = torch.randint(0, config.vocab_size, (B, PROMPT), generator=gen).cuda()
        row[f"batch{B}_tok_s"] = _decode_rate(lambda n, p=prompts: _hf_generate(hf, p, n, static), B, new_tokens,
                                              repeats)
    return row, tokens


def _brief(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


def run_cuda_bench(configs: tuple[str, ...] = CONFIGS, new_tokens: int = 128, repeats: int = 3,
                   compile: bool = True, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """{config: {"rows": {row: figures}, ...}}; a row that fails holds {"error": why} and the run goes on."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"ulm bench --device cuda: this torch ({torch.__version__}) sees no CUDA device")
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for name in configs:
        progress(f"{name}: building the random-weight model")
        model = hf_model(name).to("cpu")  # off the GPU while µLM's rows run: each row's memory is its own
        state = model.state_dict()
        rows: dict[str, Any] = {}
        tokens: dict[str, list[int]] = {}
        logits: dict[str, torch.Tensor] = {}
        for label, quant, compiled in ULM_ROWS:
            if compiled and not compile:
                continue
            try:  # the compiled row decodes at batch 1 only: each batch bucket would compile anew
                rows[label], tokens[label], logits[label] = _ulm_row(name, state, quant, compiled, new_tokens,
                                                                     repeats, () if compiled else BATCHES)
            except Exception as exc:  # a row this torch cannot run (a kernel missing, a compile failure)
                rows[label] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
            progress(f"{name}: {label}: {_brief(rows[label])}")
        reference = logits.get("ulm bf16")
        for label, row_logits in logits.items():
            if reference is not None and label != "ulm bf16":
                rows[label]["top1_agreement"] = float((row_logits.argmax(-1) == reference.argmax(-1)).float().mean())
                rows[label]["logit_error"] = float((row_logits - reference).abs().mean() / reference.std())
        model.to("cuda")
        for label, static in (("HF dynamic cache", False), ("HF static cache", True)):
            try:
                rows[label], tokens[label] = _hf_row(model, name, static, new_tokens, repeats, BATCHES)
            except Exception as exc:
                rows[label] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
            progress(f"{name}: {label}: {_brief(rows[label])}")
        base = tokens.get("ulm bf16", [])
        checks = {label: common_prefix(base, toks) for label, toks in tokens.items() if label != "ulm bf16"}
        results[name] = {"rows": rows, "shared_greedy_tokens_with_ulm_bf16": checks, "new_tokens": new_tokens}
        del model, state, logits
        gc.collect()
        torch.cuda.empty_cache()
    return results


def render_cuda(results: dict[str, Any]) -> str:
    """The tables: one per config, rows as engines, with ratios to HF's static cache."""
    lines = [f"device: {results['device']}, torch {results['torch']}"]
    cols = ("decode_tok_s", "prefill_tok_s", *(f"batch{B}_tok_s" for B in BATCHES), "peak_gpu_mib")
    for name in CONFIGS:
        if name not in results:
            continue
        rows = results[name]["rows"]
        base = rows.get("HF static cache", {})
        lines += ["", f"{name} (random weights), batch-1 decode after a {PROMPT}-token prompt, "
                  f"{results[name]['new_tokens']} new tokens",
                  "| engine | decode tok/s | prefill@2048 tok/s | batch 8 tok/s | batch 32 tok/s | peak GPU MiB "
                  "| decode × HF static | top-1 vs bf16 | logit err |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for label, r in rows.items():
            if "error" in r:
                lines.append(f"| {label} | error: {r['error']} |")
                continue
            ratio = f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}×" if "decode_tok_s" in base else "-"
            acc = f"{r['top1_agreement']:.1%}" if "top1_agreement" in r else "-"
            err = f"{r['logit_error']:.3f}" if "logit_error" in r else "-"
            cells = " | ".join(f"{r[c]:,.0f}" if c in r else "-" for c in cols)
            lines.append(f"| {label} | {cells} | {ratio} | {acc} | {err} |")
        checks = results[name]["shared_greedy_tokens_with_ulm_bf16"]
        lines.append("greedy tokens shared with µLM bf16: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    return "\n".join(lines)
