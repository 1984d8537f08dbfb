"""`ulm bench`'s driver: tokenise the fixed text once, then run each engine in its own subprocess.

The `repeats` runs are rounds: each round runs every engine once, in a fresh process, so a noisy spell of
a shared machine hits every engine alike instead of all the runs of one; each figure is the median over
the rounds (µLM's accuracy pass runs in the first round only).

Every engine gets the same token ids (written to a temp JSON file), the same thread count (torch's and
OpenMP's; OMP_WAIT_POLICY is the caller's: spinning waits are fastest on an idle machine and worst on a
busy one) and the same model file. A model carried in pieces (the coder models) is one GGUF for µLM, which
maps the pieces; llama.cpp and HF transformers need one file, so the pieces are joined (and checked) once
into the run's temp dir for them, unless µLM's cache holds a joined copy already. For a GGUF, µLM's
cache (converted or repacked weights) is warmed first in a throwaway process, so µLM's load time is that
of a normal (cached) start, as for every later `ulm` run (HF directories are not converted: nothing to warm).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ulm.bench.measure import progress
from ulm.bench.texts import CODE, TEXT, take
from ulm.registry import ModelSource, resolve

PREFILL_TOKENS = 512
PROMPT_TOKENS = 64
ACCURACY_TOKENS = 256


def bench_ids(model: str) -> dict[str, list[int]]:
    """The token ids every engine runs on: 512 to prefill, a 64-token prompt, 256 of each text for the
    accuracy figures."""
    from ulm.tokenizer import encode_prompt, load_tokenizer

    tokenizer = load_tokenizer(resolve(model))
    ids = encode_prompt(tokenizer, TEXT)
    return {"prefill": take(ids, PREFILL_TOKENS), "prompt": take(ids, PROMPT_TOKENS),
            "accuracy": take(ids, ACCURACY_TOKENS), "accuracy_code": take(encode_prompt(tokenizer, CODE),
                                                                          ACCURACY_TOKENS)}


def one_file(source: ModelSource, tmp: Path) -> Path:
    """The model as one GGUF file for the engines that open a path: the file itself, the verified joined
    copy µLM's cache holds, or the pieces joined into `tmp` now (with progress)."""
    if not source.parts:
        return source.path
    from ulm.commands.progressbar import shown
    from ulm.loading.verified import join_source, joined_path

    joined = joined_path(source)
    if joined.is_file() and joined.stat().st_size == source.size:
        return joined
    progress(f"joining {source.name}'s pieces into one file for the other engines")
    with shown():
        return join_source(source, tmp / f"{source.name}.gguf")


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
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory(prefix="ulm-bench-") as tmp:
        ids_file = Path(tmp) / "ids.json"
        ids_file.write_text(json.dumps(ids))
        common = ["--model", model, "--ids", str(ids_file), "--threads", str(threads), "--repeats", "1",
                  "--new-tokens", str(new_tokens)]
        source = resolve(model)
        if source.kind == "gguf" and any(not e.startswith("ulm") for e in engines):
            common += ["--gguf", str(one_file(source, Path(tmp)))]
        if any(e.startswith("ulm") for e in engines) and source.kind == "gguf":
            progress("warming µLM's weight cache")
            run_worker(["ulm", *common, "--warm"], threads, timeout_s)
        for r in range(repeats):
            for name in engines:
                if rounds[name] and "error" in rounds[name][0]:
                    continue  # an engine that cannot run here is not retried
                if repeats > 1:
                    progress(f"round {r + 1} of {repeats}: {name}")
                extra = ["--accuracy"] if accuracy and name == "ulm" and r == 0 else []
                rounds[name].append(run_worker([name, *common, *extra], threads, timeout_s))
                if "error" in rounds[name][-1]:
                    progress(f"{name}: skipped: {rounds[name][-1]['error']}")
    return {name: combine(runs) for name, runs in rounds.items()}


def combine(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One engine's rounds as one result: the first error if any failed, else the median of every number
    (top1_agreement and anything else only some rounds report is taken from the first that has it)."""
    failed = next((run for run in runs if "error" in run), None)
    if failed is not None:
        return failed
    out: dict[str, Any] = {}
    for run in runs:
        for key, value in run.items():
            if key in out:
                continue
            values = [r[key] for r in runs if key in r]
            numeric = len(values) == len(runs) and all(isinstance(v, int | float) for v in values)
            out[key] = statistics.median(values) if numeric else value
    return out
