"""One engine's benchmark in its own process (so its peak RSS is its own): `python -m ulm.bench.worker`.

Reads the token ids from a JSON file written by `ulm.bench.run` ({"prefill": [...], "prompt": [...],
"accuracy": [...], "accuracy_code": [...]}), loads the engine, measures, and prints one JSON object on
stdout: load_s, import_s, prefill_tok_s, decode_tok_s, ttft_ms, peak_rss_mib (+ for `ulm`, what its
weights are and, when asked, top1_agreement and top1_agreement_code), or {"error": "..."} when the engine
cannot run here. Progress goes to stderr. `--gguf` names the one-file GGUF llama.cpp and HF transformers
open (the joined pieces of a model carried in several).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ulm.bench.engines import ENGINES, EngineUnavailable, open_engine
from ulm.bench.measure import measure, peak_rss_mib, progress
from ulm.registry import ModelSource, resolve


def top1_agreement(model: str, texts: list[list[int]]) -> list[float]:
    """Teacher-forced top-1 agreement of the fast mode with the exact (fp32) mode over each text's ids: the
    share of positions whose argmax next token is the same. The fast mode reads a text one token a step
    through its KV cache, on the kernels its decoding runs (the exact mode in one forward)."""
    import torch

    from ulm.api import load
    from ulm.kv_cache import KVCache

    batches = [torch.tensor([ids]) for ids in texts]  # [1, T] each
    with torch.inference_mode():
        exact_model = load(model, mode="exact")
        exact = [exact_model.logits(batch)[0].argmax(-1) for batch in batches]  # [T] each
        del exact_model
        net = load(model, mode="fast").module
        shares = []
        for batch, want in zip(batches, exact, strict=True):
            T = batch.shape[1]
            cache = KVCache(net.config, 1, T, net.dtype)
            fast = torch.cat([net(batch[:, t:t + 1], cache=cache, start=t)[0].argmax(-1) for t in range(T)])
            shares.append(float((fast == want).float().mean()))
    return shares


def weights_of(engine: object) -> str:
    """What a µLM engine's linears are, for the report: "GGUF blocks" or "int4"."""
    from ulm.kquant import KQuantLinear

    module = getattr(engine, "module", None) or getattr(getattr(engine, "model", None), "module", None)
    layers = getattr(module, "layers", [])
    return "GGUF blocks" if layers and isinstance(layers[0].attn.wqkv, KQuantLinear) else "int4"


def run(engine_name: str, model: str, threads: int, repeats: int, new_tokens: int, ids: dict[str, list[int]],
        accuracy: bool, warm_only: bool = False, gguf: Path | None = None) -> dict[str, Any]:
    """Load the engine and measure it; with warm_only, just load it (to fill µLM's weight cache)."""
    source = resolve(model)
    if gguf is not None and not engine_name.startswith("ulm"):
        source = ModelSource(source.name, "gguf", gguf)  # the one file the other engines open
    max_len = max(len(ids["prefill"]), len(ids["prompt"]) + new_tokens)
    progress(f"{engine_name}: loading {source.name if source.parts else source.path.name}")
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
    if engine_name == "ulm":
        result["weights"] = weights_of(engine)
    if accuracy:
        texts = [ids["accuracy"], *([ids["accuracy_code"]] if "accuracy_code" in ids else [])]
        progress(f"{engine_name}: top-1 agreement with the exact mode over {len(texts)} × {len(texts[0])} tokens")
        shares = top1_agreement(model, texts)
        result["top1_agreement"] = shares[0]
        if len(shares) > 1:
            result["top1_agreement_code"] = shares[1]
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
    parser.add_argument("--gguf", type=Path, help="the model as one GGUF file, for llama.cpp and HF")
    args = parser.parse_args(argv)
    ids = json.loads(args.ids.read_text())
    result = run(args.engine, args.model, args.threads, args.repeats, args.new_tokens, ids, args.accuracy,
                 args.warm, args.gguf)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
