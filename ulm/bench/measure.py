"""What the benchmark measures, the same way for every engine: load, prefill, TTFT, decode, peak RSS.

An engine is anything with the `Engine` methods below, driven greedily (argmax) on token ids, so the
engines differ only in their own arithmetic and overheads. Each figure is the median of `repeats` runs
(the machines are shared and noisy); one untimed warm-up run comes first.

- prefill_tok_s: prompt tokens / seconds to prefill a fresh cache with the 512-token prompt (logits of
  the last position computed);
- ttft_ms: a fresh cache, the 64-token prompt in, its first greedy token out;
- decode_tok_s: after that, `new_tokens − 1` more tokens, one at a time, each fed back in / their time;
- peak_rss_mib: the process's peak resident set (ru_maxrss), so one engine per process.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Protocol


class Engine(Protocol):
    """One engine under test, loaded, driven on token ids with greedy decoding."""

    def prefill(self, ids: Sequence[int]) -> int:
        """Reset the cache, run the prompt, return the greedy next token."""
        ...

    def step(self, token: int) -> int:
        """Feed one token at the next position, return the greedy next token."""
        ...


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def progress(message: str) -> None:
    """One line of progress on stderr (stdout carries results only)."""
    print(message, file=sys.stderr, flush=True)


def _prefill_s(engine: Engine, ids: Sequence[int]) -> float:
    t0 = time.perf_counter()
    engine.prefill(ids)
    return time.perf_counter() - t0


def _decode_run(engine: Engine, prompt: Sequence[int], new_tokens: int) -> tuple[float, float]:
    """(TTFT seconds, decode seconds for the remaining new_tokens − 1 tokens)."""
    t0 = time.perf_counter()
    token = engine.prefill(prompt)
    t1 = time.perf_counter()
    for _ in range(new_tokens - 1):
        token = engine.step(token)
    return t1 - t0, time.perf_counter() - t1


def measure(engine: Engine, prefill_ids: Sequence[int], prompt_ids: Sequence[int], new_tokens: int,
            repeats: int, label: str) -> dict[str, float]:
    """The medians of `repeats` timed runs of prefill and of prompt → first token → decode."""
    if new_tokens < 2:
        raise ValueError("the decode measurement needs at least 2 new tokens")
    _decode_run(engine, prompt_ids[:8], 4)  # warm-up: first-call allocations, lazy inits
    prefills, ttfts, decodes = [], [], []
    for i in range(repeats):
        prefills.append(_prefill_s(engine, prefill_ids))
        ttft, decode = _decode_run(engine, prompt_ids, new_tokens)
        ttfts.append(ttft)
        decodes.append(decode)
        progress(f"  {label} run {i + 1}/{repeats}: prefill {len(prefill_ids) / prefills[-1]:.0f} tok/s, "
                 f"ttft {ttft * 1e3:.0f} ms, decode {(new_tokens - 1) / decode:.1f} tok/s")
    return {
        "prefill_tok_s": len(prefill_ids) / statistics.median(prefills),
        "ttft_ms": statistics.median(ttfts) * 1e3,
        "decode_tok_s": (new_tokens - 1) / statistics.median(decodes),
    }
