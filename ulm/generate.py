"""Generation: a `Generator` owns a model and its KV cache and turns prompts (token ids) into streamed text.

    gen = Generator(model, tokenizer, max_batch=2)
    for event in gen.stream([Request(ids_a, SamplingParams(temperature=0), max_tokens=64),
                             Request(ids_b, SamplingParams(seed=1), stop=("\\n\\n",))]):
        event.index, event.text, event.token_id        # one generated token of prompt `index` (text may be "")
        event.finish_reason, event.usage, event.timings  # set on the last event of each prompt

- Prefill, then decode: each prompt is prefilled into its own cache row (row i for prompt i); then all
  unfinished rows decode together, one token per step, logits for the last position only.
- Prefix reuse: the generator remembers which tokens each cache row holds. A prompt that extends them only
  prefills the new tokens (`usage.cached_tokens` says how many were reused); on divergence the row is
  truncated to the common prefix. A chat turn therefore prefills only the new user message.
- Stops: stop token ids (EOS and end-of-turn by default) end with "stop" and are not part of the text; stop
  strings are matched across tokens and never emitted (`ulm.stops`); `max_tokens`, or a full context,
  ends with "length". Text is detokenized incrementally (`ulm.detok`): never half a character.
- Context policy: a prompt of `max_len` tokens or more raises ContextLengthError before any work; a
  generation that fills the context ends with "length".
- Memory follows use: the KV cache starts at 256 positions per row and doubles (copying what is filled)
  up to `max_len`, so an 8k-context model answering short prompts keeps a small cache.
- Sampling per row (`ulm.sampling.BatchSampler`): a seeded row draws from its own generator, so batched
  generation equals one-by-one generation for greedy and for seeded sampling.
- `reference_greedy(model, ids, n)` is the naive uncached loop: the oracle the cached path is tested against.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ulm.detok import IncrementalDetokenizer
from ulm.errors import ContextLengthError, EmptyPromptError
from ulm.kv_cache import KVCache
from ulm.model import Transformer
from ulm.sampling import BatchParams, BatchSampler, SamplingParams, sample
from ulm.stops import FinishReason, StopCriteria, StopStrings

MIN_CACHE_LEN = 256  # positions per row the KV cache starts with; it doubles up to max_len as needed


@dataclass(frozen=True)
class Request:
    """One prompt to complete and how."""

    ids: Sequence[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int = 256
    stop: Sequence[str] = ()  # stop strings
    stop_token_ids: Sequence[int] | None = None  # None = the generator's defaults (EOS, end of turn)


@dataclass(frozen=True)
class Usage:
    """Token counts of one completion (completion_tokens includes a stop token that ended it)."""

    prompt_tokens: int
    cached_tokens: int  # prompt tokens whose K/V were reused from the cache (not prefilled)
    completion_tokens: int

    @property
    def prefilled_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


@dataclass(frozen=True)
class Timings:
    """Where the time of one call went (shared by the prompts of a batch)."""

    prefill_ms: float  # prefill of all prompts and the first sampling: the time to the first tokens
    decode_ms: float  # the decode steps since (forward, sampling, detokenizing; not the consumer's time)
    decode_steps: int  # forward passes after the prefill

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_steps / (self.decode_ms / 1000) if self.decode_ms > 0 else 0.0


@dataclass(frozen=True)
class Event:
    """One step of one prompt's stream: a token and its text, or (last) the finish."""

    index: int  # which request of the call
    text: str  # text that is now certain ("" when held back)
    token_id: int | None  # None on a finish event that carries only held-back text
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timings: Timings | None = None


@dataclass(frozen=True)
class Completion:
    """A finished generation: what `Generator.generate` returns per request."""

    text: str
    token_ids: list[int]  # generated tokens (a stop token excluded)
    finish_reason: FinishReason
    usage: Usage
    timings: Timings


@dataclass
class _Seq:
    """Mutable state of one sequence during a call."""

    index: int
    row: int
    request: Request
    criteria: StopCriteria
    detok: IncrementalDetokenizer
    stops: StopStrings
    cached: int
    generated: list[int] = field(default_factory=list)
    finished: bool = False


class Generator:
    """Prefill/decode over a model and a KV cache of `max_batch` rows × `max_len` positions."""

    def __init__(self, model: Transformer, tokenizer: Any, max_batch: int = 1, max_len: int | None = None,
                 stop_token_ids: Sequence[int] = (), skip_special_tokens: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = model.config
        self.max_batch = max_batch
        self.max_len = min(max_len or self.config.max_seq_len, self.config.max_seq_len)
        self.stop_token_ids = tuple(stop_token_ids) or tuple(self.config.eos_token_ids)
        self.skip_special_tokens = skip_special_tokens
        self.device = model.device
        self._cache_dtype = model.dtype if model.dtype.is_floating_point else torch.float32
        self._cache: KVCache | None = None
        self._row_tokens: list[list[int]] = [[] for _ in range(max_batch)]  # what each cache row holds
        self.sampler = BatchSampler(max_batch, self.config.vocab_size, self.device)

    @property
    def cache(self) -> KVCache:
        """The KV cache: allocated on first use, grown as sequences get longer (`_reserve`)."""
        if self._cache is None:
            self._cache = KVCache(self.config, self.max_batch, min(self.max_len, MIN_CACHE_LEN), self._cache_dtype,
                                  self.device)
        return self._cache

    def _reserve(self, length: int) -> KVCache:
        """The cache, with room for `length` positions per row: a full-context cache is allocated (and
        zeroed, so touched) only when a sequence needs it, so memory follows use. Grows ×2, copies the
        filled prefix."""
        cache = self.cache
        if length <= cache.max_len:
            return cache
        new_len = min(self.max_len, max(length, 2 * cache.max_len))
        grown = KVCache(self.config, self.max_batch, new_len, self._cache_dtype, self.device)
        used = int(cache.lengths.max())
        grown.k[:, :, :, :used] = cache.k[:, :, :, :used]  # [L, B, Hkv, used, hd]
        grown.v[:, :, :, :used] = cache.v[:, :, :, :used]
        grown.lengths.copy_(cache.lengths)
        self._cache = grown
        return grown

    @torch.inference_mode()  # the cache's tensors were made under inference mode: update them there too
    def reset(self) -> None:
        """Forget every cached prefix."""
        self._row_tokens = [[] for _ in range(self.max_batch)]
        if self._cache is not None:
            self._cache.reset()

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Run `requests` to completion; one Completion per request, in order."""
        texts: list[list[str]] = [[] for _ in requests]
        tokens: list[list[int]] = [[] for _ in requests]
        done: list[Completion | None] = [None] * len(requests)
        for ev in self.stream(requests):
            texts[ev.index].append(ev.text)
            if ev.token_id is not None:
                tokens[ev.index].append(ev.token_id)
            if ev.finish_reason is not None:
                assert ev.usage is not None and ev.timings is not None
                done[ev.index] = Completion("".join(texts[ev.index]), tokens[ev.index], ev.finish_reason,
                                            ev.usage, ev.timings)
        return [c for c in done if c is not None]

    def stream(self, requests: Sequence[Request]) -> Iterator[Event]:
        """Events of all requests as they are generated (validated before any work is done)."""
        if not requests:
            return iter(())
        if len(requests) > self.max_batch:
            raise ValueError(f"{len(requests)} prompts, but this generator has {self.max_batch} cache rows")
        for req in requests:
            if len(req.ids) == 0:
                raise EmptyPromptError("the prompt has no tokens")
            if len(req.ids) >= self.max_len:
                raise ContextLengthError(len(req.ids), self.max_len)
            req.sampling.validate()
            if req.max_tokens < 1:
                raise ValueError(f"max_tokens must be >= 1, got {req.max_tokens}")
            bad = [t for t in req.ids if not 0 <= t < self.config.vocab_size]
            if bad:
                raise ValueError(f"token id {bad[0]} is outside the vocabulary (0..{self.config.vocab_size - 1})")
        return self._run(requests)

    # --- the loop ------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _run(self, requests: Sequence[Request]) -> Iterator[Event]:
        seqs = [self._start(i, req) for i, req in enumerate(requests)]
        t0 = time.perf_counter()
        logits = torch.cat([self._prefill(seq) for seq in seqs])  # [B, V]
        prefill_ms: float | None = None  # time to the first tokens (prefill + first sampling)
        decode_s, steps = 0.0, 0
        active = seqs
        row_list = [s.row for s in active]
        rows = torch.tensor(row_list, device=self.device)  # [b]
        params = self.sampler.params.select(rows)
        step_ids = torch.empty(len(active), 1, dtype=torch.long, device=self.device)  # [b, 1]
        busy = t0
        while True:
            next_tokens = self._sample(logits, rows, params, active)  # [b]
            if any(self.sampler.uses_penalties(r) for r in row_list):
                self.sampler.observe(rows, next_tokens)
            token_list = next_tokens.tolist()
            now = time.perf_counter()
            if prefill_ms is None:
                prefill_ms = (now - t0) * 1000
            else:
                decode_s += now - busy
            timings = Timings(prefill_ms, decode_s * 1000, steps)
            events = [self._emit(seq, token, timings) for seq, token in zip(active, token_list, strict=True)]
            yield from events  # the consumer's time between events is not counted as decode time
            busy = time.perf_counter()
            if any(s.finished for s in active):
                keep = [i for i, s in enumerate(active) if not s.finished]
                if not keep:
                    return
                active = [active[i] for i in keep]
                row_list = [s.row for s in active]
                keep_t = torch.tensor(keep, device=self.device)
                next_tokens = next_tokens.index_select(0, keep_t)
                rows = rows.index_select(0, keep_t)
                params = params.select(keep_t)
                step_ids = step_ids[: len(active)]
                token_list = [token_list[i] for i in keep]
            step_ids.copy_(next_tokens.unsqueeze(1))
            logits = self._decode_step(step_ids, active, row_list, rows)  # [b, V]
            for seq, token in zip(active, token_list, strict=True):
                self._row_tokens[seq.row].append(token)
            steps += 1

    def _decode_step(self, step_ids: torch.Tensor, active: list[_Seq], row_list: list[int],
                     rows: torch.Tensor) -> torch.Tensor:
        """One forward of the active rows' last tokens (step_ids [b, 1]) → logits [b, V]; advances the cache."""
        starts = [len(self._row_tokens[r]) for r in row_list]  # = cache.lengths of the rows, kept in Python
        cache = self._reserve(max(starts) + 1)
        if all(s == starts[0] for s in starts) and row_list == list(range(len(row_list))):
            # rows 0..b-1 at one position (batch-1 decode, equal prompts): the cache's slice path
            logits = self.model(step_ids, cache=cache, start=starts[0], last_only=True)
        else:
            start = torch.tensor(starts, device=self.device)  # [b]
            logits = self.model(step_ids, cache=cache, start=start, rows=rows, last_only=True)
        cache.advance(row_list[0] if len(row_list) == 1 else rows, 1)
        return logits[:, -1]  # [b, V]

    def _start(self, index: int, req: Request) -> _Seq:
        """Set up row `index` for `req`: reuse the cached prefix, truncate the rest, seed its sampler."""
        row = index
        cache = self.cache
        held = self._row_tokens[row][: int(cache.lengths[row])]
        common = _common_prefix(held, req.ids)
        common = min(common, len(req.ids) - 1)  # the last prompt token is always run, for its logits
        cache.truncate(row, common)
        self._row_tokens[row] = list(req.ids[:common])
        self.sampler.set_row(row, req.sampling)
        stop_ids = self.stop_token_ids if req.stop_token_ids is None else tuple(req.stop_token_ids)
        return _Seq(index, row, req, StopCriteria.make(stop_ids, req.max_tokens),
                    IncrementalDetokenizer(self.tokenizer, self.skip_special_tokens), StopStrings(req.stop), common)

    def _prefill(self, seq: _Seq) -> torch.Tensor:
        """Run the prompt's uncached tokens into the seq's row; logits of its last token [1, V]."""
        cache = self._reserve(len(seq.request.ids))
        new = list(seq.request.ids[seq.cached:])
        ids = torch.tensor([new], dtype=torch.long, device=self.device)  # [1, T]
        rows = torch.tensor([seq.row], device=self.device)
        logits = self.model(ids, cache=cache, start=seq.cached, rows=rows, last_only=True)[:, -1]  # [1, V]
        cache.advance(seq.row, len(new))
        self._row_tokens[seq.row].extend(new)
        return logits

    def _sample(self, logits: torch.Tensor, rows: torch.Tensor, params: BatchParams,
                active: list[_Seq]) -> torch.Tensor:
        """Next token of each active row: logits [b, V] → long [b]."""
        row_list = [s.row for s in active]
        penalised = any(self.sampler.uses_penalties(r) for r in row_list)
        if not penalised and all(s.request.sampling.greedy for s in active):
            return logits.argmax(dim=-1)
        counts = self.sampler.counts.index_select(0, rows) if penalised else None
        return sample(logits, params, counts, [self.sampler.generators[r] for r in row_list])

    def _emit(self, seq: _Seq, token: int, timings: Timings) -> Event:
        """Apply the stop rules to `token` of `seq`: its event (the finish event when it ends the sequence)."""
        seq.generated.append(token)
        reason = seq.criteria.check(token, len(seq.generated))
        if reason == "stop" and token in seq.criteria.stop_token_ids:
            text = seq.stops.feed(seq.detok.flush())[0] + seq.stops.flush()
            return self._finish(seq, text, None, "stop", timings)
        emit, stopped = seq.stops.feed(seq.detok.add(token))
        if stopped:
            return self._finish(seq, emit, token, "stop", timings)
        # The next step would write at position len(row tokens): a full row cannot take another token.
        if reason is None and len(self._row_tokens[seq.row]) >= self.max_len:
            reason = "length"
        if reason is not None:
            tail, stopped = seq.stops.feed(seq.detok.flush())
            text = emit + tail + ("" if stopped else seq.stops.flush())
            return self._finish(seq, text, token, "stop" if stopped else reason, timings)
        return Event(seq.index, emit, token)

    def _finish(self, seq: _Seq, text: str, token: int | None, reason: FinishReason, timings: Timings) -> Event:
        seq.finished = True
        usage = Usage(len(seq.request.ids), seq.cached, len(seq.generated))
        return Event(seq.index, text, token, reason, usage, timings)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@torch.inference_mode()
def reference_greedy(model: Transformer, ids: Sequence[int], n: int, stop_token_ids: Sequence[int] = ()) -> list[int]:
    """The naive uncached greedy loop (the whole sequence re-run every step): the oracle for tests."""
    seq = list(ids)
    out: list[int] = []
    for _ in range(n):
        logits = model(torch.tensor([seq], dtype=torch.long, device=model.embed.weight.device))  # [1, T, V]
        token = int(logits[0, -1].argmax())
        out.append(token)
        if token in stop_token_ids:
            break
        seq.append(token)
    return out
