"""`ulm bench`'s driver: tokenise the fixed text once, then run each engine in its own subprocess.

Every engine gets the same token ids (written to a temp JSON file), the same thread count (torch's and
OpenMP's; OMP_WAIT_POLICY is the caller's: spinning waits are fastest on an idle machine and worst on a
busy one) and the same model file. For a GGUF file, µLM's
converted-weights cache is warmed first in a throwaway process, so µLM's load time is that of a normal
(cached) start, as for every later `ulm` run (HF directories are not converted: nothing to warm).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ulm.bench.measure import progress
from ulm.bench.texts import TEXT, take
from ulm.registry import resolve

PREFILL_TOKENS = 512
PROMPT_TOKENS = 64
ACCURACY_TOKENS = 256


def bench_ids(model: str) -> dict[str, list[int]]:
    """The token ids every engine runs on: 512 to prefill, a 64-token prompt, 256 for the accuracy figure."""
    from ulm.tokenizer import encode_prompt, load_tokenizer

    ids = encode_prompt(load_tokenizer(resolve(model)), TEXT)
    return {"prefill": take(ids, PREFILL_TOKENS), "prompt": take(ids, PROMPT_TOKENS),
            "accuracy": take(ids, ACCURACY_TOKENS)}


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["TQDM_DISABLE"] = "1"  # transformers' GGUF conversion bar would flood the progress lines
    return env


def run_worker(args: Sequence[str], threads: int, timeout_s: float) -> dict[str, Any]:
    """Run `python -m ulm.bench.worker ARGS`; its stderr passes through, its last stdout line is the result."""
    cmd = [sys.executable, "-m", "ulm.bench.worker", *args]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=_worker_env(threads), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"the worker exited with status {proc.returncode}"}
    return json.loads(lines[-1])


def run_bench(model: str, engines: Sequence[str], threads: int, repeats: int, new_tokens: int,
              accuracy: bool = True, timeout_s: float = 900.0) -> dict[str, dict[str, Any]]:
    """Each engine's figures (or {"error": ...}), keyed by engine name, in the order given."""
    progress(f"tokenising the benchmark text for {model}")
    ids = bench_ids(model)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ulm-bench-") as tmp:
        ids_file = Path(tmp) / "ids.json"
        ids_file.write_text(json.dumps(ids))
        common = ["--model", model, "--ids", str(ids_file), "--threads", str(threads), "--repeats", str(repeats),
                  "--new-tokens", str(new_tokens)]
        if any(e.startswith("ulm") for e in engines) and resolve(model).kind == "gguf":
            progress("warming µLM's weight cache")
            run_worker(["ulm", *common, "--warm"], threads, timeout_s)
        for name in engines:
            extra = ["--accuracy"] if accuracy and name == "ulm" else []
            results[name] = run_worker([name, *common, *extra], threads, timeout_s)
            if "error" in results[name]:
                progress(f"{name}: skipped: {results[name]['error']}")
    return results
