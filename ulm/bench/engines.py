"""The engines `ulm bench` compares, each behind the same small interface (see `ulm.bench.measure.Engine`).

| name        | what runs                                                                 |
|-------------|---------------------------------------------------------------------------|
| `ulm`       | µLM fast mode: int4 or GGUF block-quant weights, bf16 activations         |
| `ulm_exact` | µLM exact mode: fp32 dequantised weights                                  |
| `hf`        | HF transformers loading the same checkpoint (the GGUF, dequantised), bf16 |
| `hf_fp32`   | the same in fp32                                                          |
| `llama_cpp` | llama.cpp through llama-cpp-python on the GGUF as stored                  |

`open_engine(name, source, threads, max_len)` imports the engine's library, loads the model and returns
(engine, import seconds, load seconds). Every engine is driven greedily on token ids with a cache of
`max_len` positions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from ulm.registry import ModelSource

ENGINES = ("ulm", "ulm_exact", "hf", "hf_fp32", "llama_cpp")
GROUPS = {"ulm": ("ulm", "ulm_exact"), "hf": ("hf", "hf_fp32"), "llama_cpp": ("llama_cpp",)}
LABELS = {"ulm": "µLM fast", "ulm_exact": "µLM exact (fp32)", "hf": "HF transformers bf16",
          "hf_fp32": "HF transformers fp32", "llama_cpp": "llama.cpp (llama-cpp-python)"}


class EngineUnavailable(Exception):
    """An engine that cannot run here (library missing, checkpoint kind unsupported); the message says why."""


class UlmEngine:
    """µLM loaded through the public `ulm.load` (exact or fast mode) and decoding as its users do, through
    `Model.stream` (the engine, run in this thread): greedy, with no stop tokens."""

    def __init__(self, source: ModelSource, mode: str, max_len: int) -> None:
        from ulm.api import load

        ref = source.name if source.parts else str(source.path)
        self.model = load(ref, mode=mode, max_len=max_len + 1)  # a prompt leaves room for a token
        self._events: Any = None
        self._last = -1

    def prefill(self, ids: Sequence[int]) -> int:
        if self._events is not None:
            self._events.close()  # the last run's request is cancelled: its slot is free again
        self.model.reset()  # a fresh cache, no prefix reuse
        self._events = self.model.stream(list(ids), temperature=0, max_tokens=self.model.max_len - len(ids),
                                         stop_token_ids=[])
        return self._next()

    def step(self, token: int) -> int:
        if token != self._last:
            raise ValueError("µLM's engine feeds back the token it sampled; the bench must step with it")
        return self._next()

    def _next(self) -> int:
        event = next(self._events)
        assert event.token_id is not None
        self._last = event.token_id
        return event.token_id


class HFEngine:
    """HF transformers' causal LM with its dynamic cache; the GGUF is dequantised by transformers itself."""

    def __init__(self, source: ModelSource, dtype_name: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        dtype = getattr(torch, dtype_name)
        if source.kind == "gguf":
            model = AutoModelForCausalLM.from_pretrained(str(source.path.parent), gguf_file=source.path.name,
                                                         dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(source.path), dtype=dtype)
        self.model = model.eval()
        self._torch = torch
        self._past: Any = None

    def _run(self, ids: list[int], past: Any) -> int:
        with self._torch.inference_mode():
            out = self.model(self._torch.tensor([ids]), past_key_values=past, use_cache=True, logits_to_keep=1)
        self._past = out.past_key_values
        return int(out.logits[0, -1].argmax())

    def prefill(self, ids: Sequence[int]) -> int:
        return self._run(list(ids), None)

    def step(self, token: int) -> int:
        return self._run([token], self._past)


class LlamaCppEngine:
    """llama.cpp through llama-cpp-python's low-level eval (no sampling chain: argmax of the last logits)."""

    def __init__(self, source: ModelSource, threads: int, max_len: int) -> None:
        import numpy as np
        from llama_cpp import Llama

        self._np = np
        self.llm = Llama(model_path=str(source.path), n_ctx=max_len, n_batch=512, n_ubatch=512,
                         n_threads=threads, n_threads_batch=threads, verbose=False)

    def _last(self) -> int:
        return int(self._np.argmax(self.llm.scores[self.llm.n_tokens - 1]))

    def prefill(self, ids: Sequence[int]) -> int:
        self.llm.reset()
        self.llm.eval(list(ids))
        return self._last()

    def step(self, token: int) -> int:
        self.llm.eval([token])
        return self._last()


def _import_s(modules: Sequence[str]) -> float:
    t0 = time.perf_counter()
    for name in modules:
        __import__(name)
    return time.perf_counter() - t0


def open_engine(name: str, source: ModelSource, threads: int, max_len: int) -> tuple[Any, float, float]:
    """Load engine `name` on `source`: (engine, seconds importing its library, seconds loading the model)."""
    if name == "llama_cpp":
        if source.kind != "gguf":
            raise EngineUnavailable("llama.cpp reads GGUF files only")
        try:
            import_s = _import_s(["numpy", "llama_cpp"])
        except ImportError:
            raise EngineUnavailable("llama-cpp-python is not installed (pip install llama-cpp-python)") from None
        t0 = time.perf_counter()
        return LlamaCppEngine(source, threads, max_len), import_s, time.perf_counter() - t0
    if name in ("hf", "hf_fp32"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import_s = _import_s(["torch", "transformers"])
        _set_torch_threads(threads)
        t0 = time.perf_counter()
        engine: Any = HFEngine(source, "bfloat16" if name == "hf" else "float32")
        return engine, import_s, time.perf_counter() - t0
    if name in ("ulm", "ulm_exact"):
        import_s = _import_s(["torch", "ulm.api"])
        _set_torch_threads(threads)
        t0 = time.perf_counter()
        engine = UlmEngine(source, "fast" if name == "ulm" else "exact", max_len)
        return engine, import_s, time.perf_counter() - t0
    raise ValueError(f"unknown engine {name!r}; expected one of {ENGINES}")


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
