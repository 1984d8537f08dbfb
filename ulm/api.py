"""µLM's Python API: load a model, get logits, generate text.

    import ulm

    model = ulm.load()                                   # the embedded SmolLM2-135M-Instruct, exact mode
    model = ulm.load("path/to/model.gguf", mode="fast")  # any GGUF file or HF dir; bf16 (+ int4) weights

    reply = model.generate([{"role": "user", "content": "Name three colours."}], max_tokens=64, seed=1)
    reply.text, reply.finish_reason, reply.usage.completion_tokens, reply.timings.decode_tokens_per_s

    print(model.generate("The capital of France is", temperature=0, max_tokens=8).text)  # raw completion

    replies = model.generate_batch(["Hi!", "Name a colour."], chat=True, temperature=0)  # decoded together

    for event in model.stream("Once upon a time", stop=["\\n\\n"]):
        print(event.text, end="", flush=True)             # the last event has finish_reason and usage

    logits = model.logits(torch.tensor([[1, 2, 3]]))    # FloatTensor [B, T, vocab], fp32, no KV cache
    model.config                                         # ulm.config.ModelConfig
    model.tokenizer                                      # the checkpoint's HF tokenizer (chat template included)

`ref` is a short name (`ulm models` lists them; None = smollm2-135m), a .gguf file or an HF directory
(config.json + *.safetensors + tokenizer files).

Modes:
- "exact" (default): fp32 weights (quantised GGUF tensors dequantised): the reference numerics.
- "fast": `ulm.fast`: int4 weight-only linears (GGUF Q4_0/Q4_1 blocks packed losslessly), bf16 activations,
  an fp32 residual stream and an LM head whose top candidates are recomputed exactly; costs a little
  accuracy for speed (see README).
`dtype` overrides the mode's activation dtype; `quant` ("int4" or "int8") picks the fast mode's scheme, or
quantises the linears of the exact mode.
`device="cuda"` runs on an NVIDIA GPU (`ulm.cuda`): the fast mode is bf16 weights there (`quant` gives int8
or int4 weight-only linears), the KV cache is allocated whole and decode steps replay CUDA graphs.

A prompt is a str (completed as raw text; `chat=True` wraps it as one user message), a list of messages
(`[{"role": ..., "content": ...}]`, rendered with the checkpoint's chat template), or a list of token ids.
Sampling keywords: `max_tokens` (256), `temperature` (0.2; 0 = greedy), `top_k` (0 = off), `top_p`
(0.9), `min_p` (0), `repetition_penalty` (1), `presence_penalty` (0), `frequency_penalty` (0), `seed`,
`stop` (a string or strings, never part of the text), `stop_token_ids` (default: EOS and end of turn).
Generation runs on µLM's engine (`ulm.engine`: the one `ulm serve` runs) in the calling thread, with one
slot whose KV cache the model keeps: a prompt that extends the previous prompt and reply (a chat) only
prefills its new tokens (`usage.cached_tokens`); `model.reset()` forgets them. `generate_batch` runs its
prompts in a fresh engine with a slot each. The events, usage, timings and Completion types are
`ulm.engine.types`'.

Errors a user can cause are `ulm.errors.UlmError` subclasses with one-line messages (an unknown model is
`ulm.registry.ModelNotFoundError`): ModelLoadError, EmptyPromptError, ContextLengthError; bad sampling
values raise ValueError naming the field.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ulm.config import ModelConfig
from ulm.engine.backend import UlmBackend
from ulm.engine.types import Completion, Event, Request, collect
from ulm.engine.worker import Engine
from ulm.errors import EmptyPromptError, ModelLoadError
from ulm.kernels.native import library
from ulm.registry import ModelSource, resolve
from ulm.sampling import SamplingParams
from ulm.tokenizer import encode_chat, encode_prompt, load_tokenizer, stop_token_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from ulm.model import Transformer

MODES = ("exact", "fast")
_MODE_DTYPE = {"exact": torch.float32, "fast": torch.bfloat16}
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}

Prompt = str | Sequence[dict[str, Any]] | Sequence[int]


class Model:
    """A loaded checkpoint: its config, tokenizer and module, with an engine (one slot) that keeps its KV cache."""

    def __init__(self, module: Transformer, tokenizer: PreTrainedTokenizerFast, source: ModelSource, mode: str,
                 load_s: float, max_len: int | None = None) -> None:
        self.module = module
        self.config: ModelConfig = module.config
        self.tokenizer = tokenizer
        self.source = source
        self.mode = mode
        self.load_s = load_s  # seconds `load` took
        self.max_len = min(max_len or self.config.max_seq_len, self.config.max_seq_len)  # the context, in tokens
        # the model behind the engine's seam
        self.backend = UlmBackend(module, tokenizer, source.name, model_path=str(source.path))
        self.stop_token_ids = stop_token_ids(tokenizer, self.config.eos_token_ids)  # the default stop_token_ids
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return (f"<ulm.Model {self.source.name} ({self.config.arch}, {self.config.n_params() / 1e6:.0f}M params) "
                f"mode={self.mode} dtype={str(self.dtype).removeprefix('torch.')} device={self.device}>")

    @property
    def dtype(self) -> torch.dtype:
        return self.module.dtype

    @property
    def device(self) -> torch.device:
        return self.module.device

    @property
    def engine(self) -> Engine:
        """The engine behind `generate` and `stream`: one slot over `backend` (its KV cache grows with use),
        run in the calling thread."""
        if self._engine is None:
            self._engine = self._new_engine(self.backend, 1)
        return self._engine

    def _new_engine(self, backend: UlmBackend, slots: int) -> Engine:
        # the whole prompt in one forward: nothing else waits for these slots
        return Engine(backend, parallel=slots, n_ctx=self.max_len, prefill_chunk=slots * self.max_len)

    def reset(self) -> None:
        """Forget the cached prefix: the next prompt is prefilled whole."""
        if self._engine is not None:
            self._engine.reset()

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> torch.Tensor:
        """Logits of every position: ids LongTensor [B, T] → FloatTensor [B, T, vocab] (fp32), no KV cache."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        if ids.dim() != 2:
            raise ValueError(f"ids must be [batch, tokens], got shape {tuple(ids.shape)}")
        if ids.shape[1] == 0:
            raise EmptyPromptError("no tokens to compute logits for")
        return self.module(ids).float()

    def encode(self, prompt: Prompt, chat: bool = False) -> list[int]:
        """The token ids a prompt becomes (see the module docstring for the prompt forms)."""
        if isinstance(prompt, str):
            if chat:
                return encode_chat(self.tokenizer, [{"role": "user", "content": _non_empty(prompt)}])
            return encode_prompt(self.tokenizer, prompt)
        items = list(prompt)
        if not items:
            raise EmptyPromptError("the prompt is empty")
        if all(isinstance(m, dict) for m in items):
            return encode_chat(self.tokenizer, items)
        if all(isinstance(t, int) for t in items):
            return [int(t) for t in items]
        raise TypeError("a prompt is a str, a list of {'role', 'content'} messages, or a list of token ids")

    def request(self, prompt: Prompt, *, chat: bool = False, max_tokens: int = 256, temperature: float = 0.2,
                top_k: int = 0, top_p: float = 0.9, min_p: float = 0.0, repetition_penalty: float = 1.0,
                presence_penalty: float = 0.0, frequency_penalty: float = 0.0, seed: int | None = None,
                stop: str | Sequence[str] | None = None, stop_token_ids: Sequence[int] | None = None) -> Request:
        """The `ulm.engine.Request` that `generate` and `stream` run, checked against this model's context."""
        sampling = SamplingParams(temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty,
                                  frequency_penalty, seed)
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        stop_ids = None if stop_token_ids is None else frozenset(int(t) for t in stop_token_ids)
        request = Request(self.encode(prompt, chat), max_tokens, sampling, stops, stop_ids)
        request.check(self.max_len, self.config.vocab_size)
        return request

    def stream(self, prompt: Prompt, **options: Any) -> Iterator[Event]:
        """Generate, yielding `ulm.engine.Event`s as tokens arrive (the last one has finish_reason, usage and
        timings); options as for `request`, checked before this returns."""
        return _untagged(self.engine.generate([self.request(prompt, **options)]))

    def generate(self, prompt: Prompt, **options: Any) -> Completion:
        """Generate to the end: a `ulm.engine.Completion` (text, token_ids, finish_reason, usage, timings)."""
        return collect(self.stream(prompt, **options))

    def generate_batch(self, prompts: Sequence[Prompt], **options: Any) -> list[Completion]:
        """Several prompts decoded together, one KV cache row each (prompts of any lengths); Completions in
        order. Each equals what `generate` gives for that prompt alone (greedy, or with a seed)."""
        if not prompts:
            return []
        requests = [self.request(p, **options) for p in prompts]
        engine = self._new_engine(UlmBackend(self.module, self.tokenizer, self.source.name), len(requests))
        events: list[list[Event]] = [[] for _ in requests]
        for i, ev in engine.generate(requests):
            events[i].append(ev)
        return [collect(evs) for evs in events]


def _untagged(pairs: Generator[tuple[int, Event], None, None]) -> Iterator[Event]:
    """The events of a one-request run; closing this closes the run (which cancels the request)."""
    with contextlib.closing(pairs):
        for _, ev in pairs:
            yield ev


def _non_empty(text: str) -> str:
    if not text.strip():
        raise EmptyPromptError("the prompt is empty")
    return text


def _resolve_dtype(dtype: torch.dtype | str | None, mode: str) -> torch.dtype:
    if dtype is None:
        return _MODE_DTYPE[mode]
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype '{dtype}' (known: {', '.join(_DTYPES)})") from None


def load(ref: str | Path | None = None, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None,
         quant: str | None = None, mode: str = "exact", max_len: int | None = None) -> Model:
    """Load a model by short name, GGUF path or HF dir (None = the embedded default); see the module docstring.

    max_len bounds the KV cache (default: the model's context length).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}' (modes: {', '.join(MODES)})")
    if quant not in (None, "int4", "int8"):
        raise ValueError(f"unknown quant '{quant}' (int4 or int8)")
    start = time.perf_counter()
    source = resolve(ref)
    target = _resolve_dtype(dtype, mode)
    # the tokenizer (transformers' import and JSON parse: seconds of Python) builds in a thread while the
    # weights load, which mostly waits on reads and native code (1.5B warm: 3.9 s and 5.0 s apart)
    with ThreadPoolExecutor(1, thread_name_prefix="ulm-tokenizer") as pool:
        tokenizing = pool.submit(load_tokenizer, source)
        module = _build(source, mode, target, quant, device)
        if torch.device(device).type == "cpu":
            library()  # the native kernels, built now (once per machine) rather than in the first request
        tokenizer = tokenizing.result()
    config = module.config
    if len(tokenizer) > config.vocab_size:
        raise ModelLoadError(f"{source.path}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
                             f"is {config.vocab_size}")
    return Model(module, tokenizer, source, mode, time.perf_counter() - start, max_len)


def _build(source: ModelSource, mode: str, dtype: torch.dtype, quant: str | None,
           device: str | torch.device) -> Transformer:
    """The module for a mode: fast = `ulm.fast` (int4 linears, bf16 activations; its cached packed weights
    are mapped without building the float model first); exact = float weights in `dtype`, quantised
    linears only when `quant` asks for them. On CUDA both are float weights in `dtype` (the fast mode's is
    bf16), with `ulm.cuda`'s int8 or int4 linears when `quant` asks."""
    from ulm.loading import load_checkpoint
    from ulm.model import build_model

    cuda = torch.device(device).type == "cuda"
    if mode == "fast" and dtype == torch.bfloat16 and not cuda:
        from ulm.fast import load_fast

        return load_fast(source, device, scheme=quant)  # None: from the GGUF's blocks where they all run
    config, state = load_checkpoint(source, dtype)
    module = build_model(config, state, dtype, device)
    if cuda:  # bf16 (the fast mode) or fp32 weights; int8 or int4 weight-only linears when `quant` asks
        from ulm.cuda.weight_only import quantize_for_cuda

        return module if quant is None else quantize_for_cuda(module, quant)
    if mode == "fast":
        from ulm.fast import make_fast

        return make_fast(module, source, dtype=dtype, scheme=quant or "int4")
    if quant is not None:
        from ulm.quant import quantize_model

        quantize_model(module, quant, dtype=dtype)
    return module
