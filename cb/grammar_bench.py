"""What cb's edit grammar (cb.grammar) costs per open-file size, beside a baseline measured in the same run.

    python -m cb.grammar_bench [--sizes 100,1000,3000] [--runs 5]

For each size, the one open file is that many lines of the installed standard library's Python source. It
prints the grammar's size (beside the file's), the time cb takes to write it (`edit_grammar`), the time
llguidance takes to compile it (an `LLMatcher` over SmolLM2's tokenizer, as ulm serve does per request),
and the time of one token mask along a realistic answer (prose, then a replace of a line from the middle
of the file): the median and the maximum over its tokens, the median over runs. The baseline is the
grammar with no file open (prose, create and run only). Nothing asserts a speed.

Needs llguidance (`pip install 'cb[dev]'`) and transformers (`cb[ulm]`); the tokenizer is read from the
embedded SmolLM2 GGUF (about 10 s, once).
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cb.grammar import edit_grammar
from tools.structure import OpenFile


def stdlib_lines(count: int) -> list[bytes]:
    """`count` lines of the standard library's own modules, in file-name order."""
    out: list[bytes] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        out += path.read_bytes().splitlines()
        if len(out) >= count:
            break
    return out[:count]


def smollm2_tokenizer() -> Any:
    import llguidance.hf
    from transformers import AutoTokenizer

    from ulm.registry import resolve

    gguf = resolve("smollm2-135m").path
    return llguidance.hf.from_tokenizer(AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name))


def answer_for(f: OpenFile | None) -> str:
    if f is None:
        return "Create it:\n<create path=\"notes.txt\">\nhello\n</create>\n"
    line = f.lines[len(f.lines) // 2]
    return (f'I will change one line.\n<replace path="{f.path}" version="{f.version}">\n<old>\n{line}\n</old>\n'
            "<new>\nvalue = compute(1, 2)\n</new>\n</replace>\nDone.\n")


def measure(tokenizer: Any, f: OpenFile | None, runs: int) -> dict[str, float]:
    """Medians over `runs`: ms to write the grammar, ms to compile it, ms per token mask (median and max)."""
    import llguidance

    write, compile_, mask_median, mask_max = [], [], [], []
    grammar = ""
    tokens = tokenizer.tokenize_str(answer_for(f))
    for _ in range(runs):
        start = time.perf_counter()
        grammar = edit_grammar([f] if f else [])
        write.append(time.perf_counter() - start)
        start = time.perf_counter()
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        compile_.append(time.perf_counter() - start)
        if matcher.is_error():
            raise SystemExit(f"llguidance refused the grammar: {matcher.get_error()}")
        masks = []
        for token in tokens:
            start = time.perf_counter()
            matcher.compute_bitmask()
            masks.append(time.perf_counter() - start)
            if not matcher.consume_token(token):
                raise SystemExit(f"the grammar refused the answer: {matcher.get_error()}")
        mask_median.append(statistics.median(masks))
        mask_max.append(max(masks))
    ms = 1000.0
    return {"grammar_bytes": len(grammar), "write_ms": statistics.median(write) * ms,
            "compile_ms": statistics.median(compile_) * ms, "mask_median_ms": statistics.median(mask_median) * ms,
            "mask_max_ms": statistics.median(mask_max) * ms, "tokens": len(tokens)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cb.grammar_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,3000", help="lines of the open file, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    tokenizer = smollm2_tokenizer()
    rows = [("no file (baseline)", 0, measure(tokenizer, None, args.runs))]
    for n in sizes:
        data = b"".join(line + b"\n" for line in stdlib_lines(n))
        rows.append((f"{n} lines", len(data), measure(tokenizer, OpenFile.from_bytes("big.py", data), args.runs)))
    print(f"cb.grammar_bench: medians of {args.runs} runs; one open file of the stdlib's source; SmolLM2 tokenizer")
    print(f"{'open file':<20} {'file B':>8} {'grammar B':>10} {'write ms':>9} {'compile ms':>11} "
          f"{'mask med ms':>12} {'mask max ms':>12}")
    for label, size, m in rows:
        print(f"{label:<20} {size:>8} {m['grammar_bytes']:>10} {m['write_ms']:>9.2f} {m['compile_ms']:>11.2f} "
              f"{m['mask_median_ms']:>12.3f} {m['mask_max_ms']:>12.2f}")


if __name__ == "__main__":
    main()
