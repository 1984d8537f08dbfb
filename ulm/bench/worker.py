"""One engine's benchmark in its own process (so its peak RSS is its own): `python -m ulm.bench.worker`.

Reads the token ids from a JSON file written by `ulm.bench.run` ({"prefill": [...], "prompt": [...],
"accuracy": [...]}), loads the engine, measures, and prints one JSON object on stdout: load_s, import_s,
prefill_tok_s, decode_tok_s, ttft_ms, peak_rss_mib (+ top1_agreement for `ulm` when asked), or
{"error": "..."} when the engine cannot run here. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ulm.bench.engines import ENGINES, EngineUnavailable, open_engine
from ulm.bench.measure import measure, peak_rss_mib, progress
from ulm.registry import resolve


def top1_agreement(source_path: str, ids: list[int]) -> float:
    """Teacher-forced top-1 agreement of the fast mode with the exact (fp32) mode over `ids`: the share of
    positions whose argmax next token is the same. The fast mode reads the text one token a step through
    its KV cache, on the kernels its decoding runs (the exact mode in one forward)."""
    import torch

    from ulm.api import load
    from ulm.kv_cache import KVCache

    batch = torch.tensor([ids])  # [1, T]
    with torch.inference_mode():
        exact = load(source_path, mode="exact").logits(batch)[0].argmax(-1)  # [T]
        net = load(source_path, mode="fast").module
        cache = KVCache(net.config, 1, len(ids), torch.bfloat16)
        fast = torch.cat([net(batch[:, t:t + 1], cache=cache, start=t)[0].argmax(-1) for t in range(len(ids))])
    return float((fast == exact).float().mean())


def run(engine_name: str, model: str, threads: int, repeats: int, new_tokens: int, ids: dict[str, list[int]],
        accuracy: bool, warm_only: bool = False) -> dict[str, Any]:
    """Load the engine and measure it; with warm_only, just load it (to fill µLM's weight cache)."""
    source = resolve(model)
    max_len = max(len(ids["prefill"]), len(ids["prompt"]) + new_tokens)
    progress(f"{engine_name}: loading {source.path.name}")
    try:
        engine, import_s, load_s = open_engine(engine_name, source, threads, max_len)
    except EngineUnavailable as exc:
        return {"error": str(exc)}
    progress(f"{engine_name}: loaded in {load_s:.2f} s (imports {import_s:.2f} s)")
    if warm_only:
        return {"load_s": load_s}
    result: dict[str, Any] = {"load_s": load_s, "import_s": import_s}
    result.update(measure(engine, ids["prefill"], ids["prompt"], new_tokens, repeats, engine_name))
    result["peak_rss_mib"] = peak_rss_mib()  # before the accuracy pass loads a second model
    if accuracy:
        progress(f"{engine_name}: top-1 agreement with the exact mode over {len(ids['accuracy'])} tokens")
        result["top1_agreement"] = top1_agreement(str(source.path), ids["accuracy"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ulm.bench.worker", description=__doc__)
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("--model", required=True)
    parser.add_argument("--ids", required=True, type=Path, help="JSON file of token ids")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--accuracy", action="store_true", help="also compute the fast mode's top-1 agreement")
    parser.add_argument("--warm", action="store_true", help="only load the engine (fills µLM's cache)")
    args = parser.parse_args(argv)
    ids = json.loads(args.ids.read_text())
    result = run(args.engine, args.model, args.threads, args.repeats, args.new_tokens, ids, args.accuracy,
                 args.warm)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
