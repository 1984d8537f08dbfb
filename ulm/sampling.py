"""Choosing the next token from logits: pure, vectorised functions over a batch of rows, each row with its
own parameters, plus a small per-batch state object that a decode loop (or the server's scheduler) keeps.

- `SamplingParams`: one sequence's settings (frozen; `validate()` names the first bad field).
- `sample(logits [B, V], params: BatchParams, counts [B, V], generators, mask)` → token ids [B]:
  the token mask (constrained decoding: a row may only take the tokens its bitmask allows) → penalties
  over the tokens generated so far → temperature → top-k → top-p → min-p → a draw.
  temperature 0 means greedy (argmax of the penalised logits). Each row draws with its own
  `torch.Generator`, so a row's tokens do not depend on which other rows share the batch.
- Penalties: `repetition_penalty` has HF semantics (a seen token's logit is divided by p when positive,
  multiplied by p when negative); `presence_penalty` and `frequency_penalty` have OpenAI semantics
  (logit -= presence·[count > 0] + frequency·count). All count the *generated* tokens only.
- `BatchSampler(max_batch, vocab_size, device)`: per-row parameter tensors, token counts and generators for
  rows that join and leave: `set_row(row, params)`, `sample(logits, rows, mask)` (which counts what it drew).
- Masks are llguidance's bitmasks: int32 [B, ⌈V/32⌉], bit i % 32 of word i / 32 set when token i is allowed
  (all bits set: an unconstrained row); `allowed(mask, V)` unpacks them to bool [B, V].

The draw is by inverse CDF (`draw`): one uniform number per row (from that row's generator; the loop is
over rows, never the vocabulary) located in the row's cumulative probabilities, in two float64 levels
(chunks, then tokens) so the tail keeps its mass and a row costs ~20 µs where one exponential per token
cost ~1 ms. Tokens of probability 0 (filtered out) can never be drawn.

On CPU with µLM's native kernels built, `sample` runs all of it in one native pass per row
(`ulm/kernels/ulm_sample.c`: the same steps and semantics, float sums in another order): 0.10 ms a step
for one row of a 49k vocabulary, 0.17 ms for four, where the torch ops below take 0.45 and 0.8 ms. The
torch ops remain the path without the kernels; the tests run `sample` on both.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence picks its tokens. Defaults sample from the model's distribution unchanged."""

    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off; keep tokens with p >= min_p · p_max
    repetition_penalty: float = 1.0  # 1 = off (HF)
    presence_penalty: float = 0.0  # 0 = off (OpenAI), -2..2
    frequency_penalty: float = 0.0  # 0 = off (OpenAI), -2..2
    seed: int | None = None  # None = a fresh random seed

    def validate(self) -> SamplingParams:
        """Return self, or raise ValueError naming the first out-of-range field."""
        checks = (
            ("temperature", self.temperature >= 0, "must be >= 0"),
            ("top_k", self.top_k >= 0, "must be >= 0"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("min_p", 0 <= self.min_p <= 1, "must be in [0, 1]"),
            ("repetition_penalty", self.repetition_penalty > 0, "must be > 0"),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, "must be in [-2, 2]"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, "must be in [-2, 2]"),
        )
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"{name} {why}, got {getattr(self, name)}")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class BatchParams:
    """SamplingParams of B rows as tensors [B] (what `sample` consumes)."""

    temperature: torch.Tensor  # float [B]
    top_k: torch.Tensor  # long [B]
    top_p: torch.Tensor  # float [B]
    min_p: torch.Tensor  # float [B]
    repetition_penalty: torch.Tensor  # float [B]
    presence_penalty: torch.Tensor  # float [B]
    frequency_penalty: torch.Tensor  # float [B]

    @classmethod
    def stack(cls, params: list[SamplingParams], device: torch.device | str = "cpu") -> BatchParams:
        def col(name: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor([getattr(p, name) for p in params], dtype=dtype, device=device)

        return cls(col("temperature", torch.float32), col("top_k", torch.long), col("top_p", torch.float32),
                   col("min_p", torch.float32), col("repetition_penalty", torch.float32),
                   col("presence_penalty", torch.float32), col("frequency_penalty", torch.float32))

    def select(self, rows: torch.Tensor) -> BatchParams:
        """The parameters of some rows (rows: long [b])."""
        return BatchParams(*(getattr(self, f).index_select(0, rows) for f in self.__dataclass_fields__))


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded with `seed`, or with fresh OS randomness when None."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else secrets.randbits(63))
    return gen


def apply_penalties(logits: torch.Tensor, counts: torch.Tensor, params: BatchParams) -> torch.Tensor:
    """Repetition (HF), presence and frequency (OpenAI) penalties; logits, counts [B, V] → logits [B, V]."""
    seen = counts > 0  # bool [B, V]
    rep = params.repetition_penalty.unsqueeze(1)  # [B, 1]
    penalised = torch.where(logits > 0, logits / rep, logits * rep)
    logits = torch.where(seen, penalised, logits)
    counts_f = counts.to(logits.dtype)
    return logits - params.presence_penalty.unsqueeze(1) * seen.to(logits.dtype) \
        - params.frequency_penalty.unsqueeze(1) * counts_f


def filter_logits(logits: torch.Tensor, params: BatchParams) -> torch.Tensor:
    """Temperature, then top-k, top-p and min-p as -inf masks; logits [B, V] (rows with temperature 0 are
    left at temperature 1: they are decided by argmax elsewhere)."""
    temp = torch.where(params.temperature > 0, params.temperature, torch.ones_like(params.temperature))
    logits = logits / temp.unsqueeze(1)  # [B, V]
    vocab = logits.shape[-1]
    use_k = (params.top_k > 0) & (params.top_k < vocab)  # bool [B]
    use_p = params.top_p < 1  # bool [B]
    if bool(use_k.any() or use_p.any()):
        threshold = _top_k_p_threshold(logits, params, use_k, use_p)  # [B, 1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if bool((params.min_p > 0).any()):
        probs = torch.softmax(logits, dim=-1)  # [B, V]
        floor = params.min_p.unsqueeze(1) * probs.amax(dim=-1, keepdim=True)  # [B, 1]
        logits = logits.masked_fill(probs < floor, float("-inf"))
    return logits


def _top_k_p_threshold(logits: torch.Tensor, params: BatchParams, use_k: torch.Tensor,
                       use_p: torch.Tensor) -> torch.Tensor:
    """The smallest logit each row keeps under top-k and top-p: [B, 1] (-inf where neither applies).

    Exact without sorting the vocabulary in the usual case: the top-p cut is searched among the n largest
    logits (n = 64, growing ×16 until every top-p row's kept mass is decided within them, at worst V).
    """
    vocab = logits.shape[-1]
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # [B, 1], the softmax normaliser over all of V
    n = min(vocab, max(64, int(params.top_k.masked_fill(~use_k, 0).max())))
    while True:
        top, _ = torch.topk(logits, n, dim=-1)  # [B, n], descending
        probs = torch.exp(top - lse)  # [B, n]
        mass_before = torch.cumsum(probs, dim=-1) - probs  # [B, n]
        keep = mass_before < params.top_p.unsqueeze(1)  # [B, n], a prefix of each row
        n_keep = keep.sum(dim=-1, keepdim=True)  # [B, 1]
        undecided = use_p & (n_keep.squeeze(1) == n)  # the cut may lie beyond the n candidates
        if n == vocab or not bool(undecided.any()):
            break
        n = vocab if n * 16 > vocab // 4 else n * 16  # past a quarter of V, a full sort is as cheap
    neg_inf = torch.full_like(lse, float("-inf"))
    k = params.top_k.clamp(min=1, max=n).unsqueeze(1)  # [B, 1]
    kth = torch.where(use_k.unsqueeze(1), top.gather(1, k - 1), neg_inf)  # [B, 1]
    pth = torch.where(use_p.unsqueeze(1), top.gather(1, n_keep.clamp(min=1) - 1), neg_inf)  # [B, 1]
    return torch.maximum(kth, pth)


_BITS = torch.arange(32, dtype=torch.int32)  # [32]


def allowed(mask: torch.Tensor, vocab: int) -> torch.Tensor:
    """The tokens a bitmask allows: int32 [B, ⌈V/32⌉] → bool [B, V]."""
    bits = (mask.unsqueeze(-1) >> _BITS.to(mask.device)) & 1  # [B, W, 32]
    return bits.flatten(1)[:, :vocab].bool()


def sample(logits: torch.Tensor, params: BatchParams, counts: torch.Tensor | None,
           generators: list[torch.Generator], mask: torch.Tensor | None = None) -> torch.Tensor:
    """The next token of each row: logits [B, V] (any float dtype), counts [B, V] or None, mask int32
    [B, ⌈V/32⌉] or None → long [B]. A row's mask must allow at least one token. On CPU with µLM's native
    kernels built, one native pass per row (`ulm_sample.c`, the same semantics), else torch ops."""
    from ulm.kernels.native import library

    lib = library() if logits.device.type == "cpu" else None
    if lib is not None:
        return _sample_native(lib, logits, params, counts, generators, mask)
    logits = logits.float()
    if mask is not None:
        logits = logits.masked_fill(~allowed(mask.to(logits.device), logits.shape[-1]), float("-inf"))
    if counts is not None:
        logits = apply_penalties(logits, counts, params)
    greedy = params.temperature == 0  # bool [B]
    if bool(greedy.all()):
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, params), dim=-1)  # [B, V]
    uniform = torch.cat([torch.rand(1, generator=gen, dtype=torch.float64, device=gen.device) for gen in generators])
    drawn = draw(probs, uniform)  # [B]
    return torch.where(greedy, logits.argmax(dim=-1), drawn) if bool(greedy.any()) else drawn


def _sample_native(lib: Any, logits: torch.Tensor, params: BatchParams, counts: torch.Tensor | None,
                   generators: list[torch.Generator], mask: torch.Tensor | None) -> torch.Tensor:
    B, V = logits.shape
    x = logits.float().contiguous()  # read only
    table = torch.stack([params.temperature, params.top_k.float(), params.top_p, params.min_p,
                         params.repetition_penalty, params.presence_penalty, params.frequency_penalty], dim=1)
    table = table.float().contiguous()  # [B, 7]
    greedy = bool((params.temperature == 0).all())  # then no row draws (its generator stays where it was)
    uniform = torch.zeros(B, dtype=torch.float64) if greedy else torch.cat(
        [torch.rand(1, generator=gen, dtype=torch.float64, device=gen.device) for gen in generators])
    seen = None if counts is None else counts.to(torch.int32).contiguous()
    bits = None if mask is None else mask.to(torch.int32).contiguous()  # [B, ⌈V/32⌉]
    assert bits is None or bits.shape == (B, (V + 31) // 32), "one mask row of ⌈V/32⌉ words per logits row"
    out = torch.empty(B, dtype=torch.long)
    if lib.ulm_sample_rows(x.data_ptr(), B, V, None if seen is None else seen.data_ptr(),
                           None if bits is None else bits.data_ptr(), table.data_ptr(), uniform.data_ptr(),
                           out.data_ptr()) != 0:
        raise MemoryError("no memory for the sampler")
    return out


DRAW_CHUNK = 128  # tokens per chunk of the two-level inverse CDF


def draw(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """The token of each row at quantile uniform[b] of its distribution: probs [B, V], uniform float64 [B] in
    [0, 1) → long [B]. Two levels, each a float64 cumulative sum: over chunks' masses ([B, V / 128]), then
    within the chosen chunk ([B, 128]); a token of probability 0 is never returned."""
    B, V = probs.shape
    pad = (-V) % DRAW_CHUNK
    chunks = (F.pad(probs, (0, pad)) if pad else probs).view(B, -1, DRAW_CHUNK)  # [B, n, C]
    cdf = chunks.sum(dim=-1, dtype=torch.float64).cumsum(dim=-1)  # [B, n]
    u = (uniform * cdf[:, -1]).unsqueeze(1)  # [B, 1], in [0, total)
    c = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)  # [B, 1]: first chunk with cdf > u
    before = torch.where(c > 0, cdf.gather(1, (c - 1).clamp(min=0)), torch.zeros_like(u))  # [B, 1]
    inner = chunks.gather(1, c.unsqueeze(2).expand(B, 1, DRAW_CHUNK)).squeeze(1).to(torch.float64).cumsum(dim=-1)
    # inside the chunk: u − before, kept below the chunk's own total (the two sums may round apart), so the
    # first entry above it is a step of the cumulative sum: a token of nonzero probability
    rest = torch.minimum(u - before, inner[:, -1:] * (1 - 2.0 ** -40)).clamp_(min=0)  # [B, 1]
    j = torch.searchsorted(inner, rest, right=True)  # [B, 1]
    return (c * DRAW_CHUNK + j).squeeze(1)


class BatchSampler:
    """Sampling state of up to `max_batch` rows (the engine's slots).

    Each row has its params, its generator and the counts of the tokens it generated. `set_row` starts a
    sequence in a row (counts cleared, generator seeded); `sample(logits, rows)` draws the next token of
    `rows` from their logits [len(rows), V] under an optional mask and counts it. A step whose rows are all
    greedy without penalties or mask is one argmax; the rows' parameters are selected once while the same
    rows keep sampling.
    """

    def __init__(self, max_batch: int, vocab_size: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.params = BatchParams.stack([SamplingParams()] * max_batch, self.device)
        self.counts = torch.zeros(max_batch, vocab_size, dtype=torch.int32, device=self.device)  # [Bmax, V]
        self.generators: list[torch.Generator] = [make_generator(0, self.device) for _ in range(max_batch)]
        self._uses_penalties = [False] * max_batch
        self._greedy = [False] * max_batch
        self._selected: tuple[list[int], torch.Tensor, BatchParams] | None = None  # rows, as a tensor, their params

    def set_row(self, row: int, params: SamplingParams) -> None:
        """Start a new sequence in `row` with `params` (validated)."""
        params.validate()
        for name in self.params.__dataclass_fields__:
            getattr(self.params, name)[row] = getattr(params, name)
        self.counts[row].zero_()
        self.generators[row] = make_generator(params.seed, self.device)
        self._uses_penalties[row] = (params.repetition_penalty != 1 or params.presence_penalty != 0
                                     or params.frequency_penalty != 0)
        self._greedy[row] = params.greedy
        self._selected = None

    def sample(self, logits: torch.Tensor, rows: list[int], mask: torch.Tensor | None = None) -> list[int]:
        """Next token of each of `rows` from logits [len(rows), V] (under mask int32 [len(rows), ⌈V/32⌉],
        if any), counted for the rows' penalties."""
        penalised = any(self._uses_penalties[r] for r in rows)
        if mask is None and not penalised and all(self._greedy[r] for r in rows):
            return logits.argmax(dim=-1).tolist()
        if self._selected is None or self._selected[0] != rows:
            index = torch.tensor(rows, dtype=torch.long, device=self.device)  # [b]
            self._selected = (list(rows), index, self.params.select(index))
        _, index, params = self._selected
        counts = self.counts.index_select(0, index) if penalised else None
        tokens = sample(logits, params, counts, [self.generators[r] for r in rows], mask)  # [b]
        if penalised:
            self.counts.index_put_((index, tokens), torch.ones_like(tokens, dtype=self.counts.dtype), accumulate=True)
        return tokens.tolist()
