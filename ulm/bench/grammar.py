"""What constrained decoding costs per decode step, beside unconstrained decoding in the same run.

    python -m ulm.bench.grammar [--model smollm2-135m] [--mode fast] [--tokens 96] [--runs 5]

Loads the model once and runs, interleaved `--runs` times, one greedy chat request through the engine:
  plain            no constraint (the baseline);
  json             a JSON Schema (response_format), each step's masks computed before its forward;
  edit             cb's edit grammar of a 60-line open file (cb.grammar, the grammar cb sends), the same way;
  edit, overlap    the same grammar with the masks computed on a thread during the forward
                   (what the engine does when torch leaves a core idle: `ulm.engine.masks.overlap_pays`).
End to end it prints the decode time per step (the engine's own timings, prefill excluded; median and
minimum over runs) and its overhead over plain. On a shared machine those totals swing more than the
overhead itself, so it also prints the overhead's parts, each timed alone on the same tokens: the engine's
wait for masks per step (`blocked`: all of the mask's time in line, what outlasted the forward with
overlap), the parser taking a token (`advance`), and the native sampler with a mask minus without one
(`sampler`); `parts %` is their sum over the plain step's minimum. Nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ulm.engine.types import Request, collect
from ulm.sampling import BatchSampler, SamplingParams

PROMPT = "In colorsys.py, rename the function rgb_to_yiq to rgb_to_ntsc."
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "legs": {"type": "integer"},
                                           "colours": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "legs", "colours"]}


def open_file() -> Any:
    """A 60-line Python file of the standard library, as cb opens it."""
    import sysconfig
    from pathlib import Path

    from tools.structure import OpenFile

    lines = (Path(sysconfig.get_paths()["stdlib"]) / "colorsys.py").read_bytes().splitlines()[:60]
    return OpenFile.from_bytes("colorsys.py", b"".join(line + b"\n" for line in lines))


def run_case(engine: Any, prompt: list[int], tokens: int, make: Callable[[], Any] | None,
             overlap: bool) -> tuple[float, float, list[int]]:
    """(ms per decode step, ms the engine waited for masks per step, the tokens) of one request."""
    engine.mask_overlap = overlap
    blocked0 = engine._masks.blocked_s if engine._masks else 0.0
    request = Request(prompt, tokens, SamplingParams(temperature=0), constraint=make() if make else None)
    done = collect(ev for _, ev in engine.generate([request]))
    blocked = (engine._masks.blocked_s if engine._masks else 0.0) - blocked0
    steps = max(done.timings.decode_steps, 1)
    return done.timings.decode_ms / steps, 1000 * blocked / (steps + 1), done.token_ids


def parts(make: Callable[[], Any], tokens: list[int], vocab: int) -> tuple[float, float]:
    """Mean ms per token of the parser taking it (advance), and median ms the sampler's mask adds (a greedy
    row under a mask goes through the native sampler; without one it is an argmax)."""
    constraint = make()
    mask = torch.full((1, (vocab + 31) // 32), -1, dtype=torch.int32)  # [1, W]
    sampler = BatchSampler(1, vocab)
    sampler.set_row(0, SamplingParams(temperature=0))
    logits = torch.randn(1, vocab)  # [1, V]
    advance, masked, plain = [], [], []
    for token in tokens:
        constraint.fill(mask.data_ptr(), 4 * mask.shape[1])
        t0 = time.perf_counter()
        constraint.advance(token)
        advance.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sampler.sample(logits, [0], mask)
        masked.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sampler.sample(logits, [0])
        plain.append(time.perf_counter() - t0)
    return 1000 * statistics.mean(advance), 1000 * max(0.0, statistics.median(masked) - statistics.median(plain))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ulm.bench.grammar", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--mode", default="fast", choices=("fast", "exact"))
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    import ulm
    from cb.grammar import edit_grammar
    from ulm.engine.worker import Engine
    from ulm.guided.grammars import Grammars
    from ulm.tokenizer import encode_chat

    model = ulm.load(args.model, mode=args.mode)
    backend = model.backend
    grammars = Grammars(backend.tokenizer, backend.vocab_size, backend.eos_ids)
    edit = edit_grammar([open_file()])
    prompt = encode_chat(backend.tokenizer, [{"role": "user", "content": PROMPT}])
    cases: list[tuple[str, Callable[[], Any] | None, bool]] = [
        ("plain", None, False), ("json", lambda: grammars.json_schema(SCHEMA), False),
        ("edit", lambda: grammars.lark(edit), False), ("edit, overlap", lambda: grammars.lark(edit), True)]
    engine = Engine(backend, parallel=1, n_ctx=2048)
    run_case(engine, prompt, 8, cases[3][1], True)  # warm-up: kernels, caches, the mask worker
    step: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    blocked: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    produced: dict[str, list[int]] = {}
    for _ in range(args.runs):
        for name, make, overlap in cases:
            ms, wait, produced[name] = run_case(engine, prompt, args.tokens, make, overlap)
            step[name].append(ms)
            blocked[name].append(wait)
    base_med, base_min = statistics.median(step["plain"]), min(step["plain"])
    print(f"ulm.bench.grammar: {args.model} ({args.mode}), one request, greedy, up to {args.tokens} tokens, "
          f"{args.runs} interleaved runs")
    print(f"{'case':<17} {'tokens':>6} {'ms/step med':>11} {'min':>6} {'vs plain':>9} {'blocked':>8} "
          f"{'advance':>8} {'sampler':>8} {'parts %':>8}")
    for name, make, _ in cases:
        med, low = statistics.median(step[name]), min(step[name])
        line = (f"{name:<17} {len(produced[name]):>6} {med:>11.2f} {low:>6.2f} "
                f"{100 * (med - base_med) / base_med:>+8.1f}%")
        if make is not None:
            wait = statistics.median(blocked[name])
            adv, samp = parts(make, produced[name], backend.vocab_size)
            line += f" {wait:>8.3f} {adv:>8.3f} {samp:>8.3f} {100 * (wait + adv + samp) / base_min:>7.2f}%"
        print(line)


if __name__ == "__main__":
    main()
