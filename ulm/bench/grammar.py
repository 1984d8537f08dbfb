"""What constrained decoding costs per decode step, beside unconstrained decoding in the same run.

    python -m ulm.bench.grammar [--model smollm2-135m] [--mode fast] [--tokens 96] [--runs 5] [--batch 1]

Loads the model once and runs, interleaved `--runs` times, the same chat prompts through the engine
(`--batch` requests at once, greedy, `--tokens` new tokens at most):
  plain            no constraint (the baseline);
  json             a JSON Schema (response_format), masks computed during the forward (what ulm serve does);
  edit             cb's edit grammar of a 60-line open file (cb.grammar, the grammar cb sends), overlapped;
  edit, no overlap the same grammar with each step's masks computed before its forward.
Each figure is the median over runs of the decode time per step (the engine's own timings: forwards,
masks, sampling, detokenizing; prefill excluded), and the overhead is relative to plain. Nothing asserts
a speed; the machine's noise is seen in the spread between runs (printed as min-max).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from ulm.engine.types import Request, collect
from ulm.sampling import SamplingParams

PROMPTS = ("In geo.py, replace 3.14 with math.pi and add import math at the top.",
           "Describe a cat as a JSON object.", "Rename area to circle_area in geo.py.",
           "Write a short note about the file.")
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


def run_case(engine: Any, prompts: list[list[int]], tokens: int, make: Callable[[], Any] | None,
             overlap: bool) -> tuple[float, int]:
    """(ms per decode step, steps) of one batch of requests."""
    engine.mask_overlap = overlap
    requests = [Request(p, tokens, SamplingParams(temperature=0), constraint=make() if make else None)
                for p in prompts]
    events: dict[int, list[Any]] = {}
    for i, ev in engine.generate(requests):
        events.setdefault(i, []).append(ev)
    done = [collect(evs) for evs in events.values()]
    ms = max(c.timings.decode_ms for c in done)
    steps = max(c.timings.decode_steps for c in done)
    return ms / max(steps, 1), steps


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ulm.bench.grammar", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--mode", default="fast", choices=("fast", "exact"))
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
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
    prompts = [encode_chat(backend.tokenizer, [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
               for i in range(args.batch)]
    cases: list[tuple[str, Callable[[], Any] | None, bool]] = [
        ("plain", None, True), ("json", lambda: grammars.json_schema(SCHEMA), True),
        ("edit", lambda: grammars.lark(edit), True), ("edit, no overlap", lambda: grammars.lark(edit), False)]
    engine = Engine(backend, parallel=args.batch, n_ctx=2048)
    run_case(engine, prompts, 8, None, True)  # warm-up: kernels, caches
    per_step: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    steps: dict[str, int] = {}
    for _ in range(args.runs):
        for name, make, overlap in cases:
            ms, n = run_case(engine, prompts, args.tokens, make, overlap)
            per_step[name].append(ms)
            steps[name] = n
    base = statistics.median(per_step["plain"])
    print(f"ulm.bench.grammar: {args.model} ({args.mode}), batch {args.batch}, up to {args.tokens} tokens, "
          f"median of {args.runs} interleaved runs")
    print(f"{'case':<18} {'ms/step':>8} {'min-max':>13} {'steps':>6} {'overhead':>9}")
    for name, _, _ in cases:
        values = per_step[name]
        med = statistics.median(values)
        print(f"{name:<18} {med:>8.2f} {min(values):>6.2f}-{max(values):<6.2f} {steps[name]:>6} "
              f"{100 * (med - base) / base:>+8.1f}%")


if __name__ == "__main__":
    main()
