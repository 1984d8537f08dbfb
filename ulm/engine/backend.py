"""What the engine needs from a model: token ids in, last-position logits out, against a KV cache with
one row per slot. `Backend` is that seam; `UlmBackend` implements it on µLM (`ulm.load` + `KVCache`).

The engine owns positions: it says which cache row each batch row uses and where its tokens start, and
the backend keeps the cache's lengths in step. Tokenisation and the chat template live here too, since
they come with the checkpoint, but the engine itself only ever sees token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch


class Backend(Protocol):
    """A loaded model as the engine and server use it."""

    model_id: str  # the short name clients send as `model`
    max_seq_len: int  # the longest context the model supports
    vocab_size: int
    eos_ids: frozenset[int]
    tokenizer: Any  # a transformers fast tokenizer (or a `tokenizers.Tokenizer`), for ulm.detok

    def encode(self, text: str, add_special: bool = False) -> list[int]: ...

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The chat template applied to messages, ending with the assistant turn's opening."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def allocate(self, rows: int, n_ctx: int) -> None:
        """(Re)allocate the KV cache: `rows` rows of `n_ctx` positions each."""
        ...

    def forward(self, ids: Sequence[Sequence[int]], rows: Sequence[int], start: Sequence[int]) -> torch.Tensor:
        """Feed ids[b] (rows of any lengths) into cache row rows[b] at positions start[b]..start[b]+len(ids[b])-1.

        Returns the logits of each row's last position: [B, V].
        """
        ...


class UlmBackend:
    """µLM's Transformer, KV cache and tokenizer behind the Backend seam."""

    def __init__(self, net: Any, tokenizer: Any, model_id: str, cache_dtype: torch.dtype | None = None) -> None:
        from ulm.tokenizer import stop_token_ids

        self._net = net  # ulm.model.Transformer (possibly with quantized linears)
        self.tokenizer = tokenizer
        self.config = net.config
        self.model_id = model_id
        self.max_seq_len = int(self.config.max_seq_len)
        self.vocab_size = int(self.config.vocab_size)
        self.eos_ids = frozenset(stop_token_ids(tokenizer, self.config.eos_token_ids))
        self._device = net.device
        self._cache_dtype = cache_dtype or (net.dtype if net.dtype.is_floating_point else torch.float32)
        self._cache: Any = None

    @classmethod
    def load(cls, ref: str | None, mode: str = "exact") -> UlmBackend:
        """Load a model by short name, .gguf path or HF dir with `ulm.load`: mode "exact" = fp32 weights,
        "fast" = int4 weight-only linears with bf16 activations (the KV cache takes the activations' dtype)."""
        import ulm

        model = ulm.load(ref, mode=mode)
        return cls(model.module, model.tokenizer, model.source.name)

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        from ulm.tokenizer import encode_chat

        return encode_chat(self.tokenizer, list(messages))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    def allocate(self, rows: int, n_ctx: int) -> None:
        from ulm.kv_cache import KVCache

        self._cache = KVCache(self.config, rows, n_ctx, self._cache_dtype, self._device)

    @torch.inference_mode()
    def forward(self, ids: Sequence[Sequence[int]], rows: Sequence[int], start: Sequence[int]) -> torch.Tensor:
        lengths = [len(r) for r in ids]
        if len(set(lengths)) > 1:  # a step mixing decode rows with a prompt chunk
            ragged = getattr(self._net, "forward_ragged", None)
            logits = None if ragged is None else ragged([list(r) for r in ids], self._cache, list(rows), list(start))
            if logits is None:  # no one-call path: each length as a batch of its own
                logits = torch.empty(len(ids), self.vocab_size, device=self._device)
                for n in sorted(set(lengths)):
                    at = [b for b, m in enumerate(lengths) if m == n]
                    logits[at] = self.forward([ids[b] for b in at], [rows[b] for b in at], [start[b] for b in at])
                return logits
            ends = [s + n for s, n in zip(start, lengths, strict=True)]
            self._cache.lengths[torch.tensor(list(rows), device=self._device)] = torch.tensor(ends, device=self._device)
            return logits
        x = torch.tensor([list(r) for r in ids], dtype=torch.long, device=self._device)  # [B, T]
        row_t = torch.tensor(list(rows), dtype=torch.long, device=self._device)  # [B]
        start_t = torch.tensor(list(start), dtype=torch.long, device=self._device)  # [B]
        logits = self._net(x, cache=self._cache, start=start_t, rows=row_t, last_only=True)  # [B, 1, V]
        self._cache.lengths[row_t] = start_t + x.shape[1]
        return logits[:, -1, :]
