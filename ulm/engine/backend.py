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
        """Feed ids[b] (all rows the same length T) into cache row rows[b] at positions start[b]..start[b]+T-1.

        Returns the logits of each row's last position: [B, V].
        """
        ...


class UlmBackend:
    """µLM's Transformer and tokenizer behind the Backend seam."""

    def __init__(self, model: Any, model_id: str) -> None:
        self._model = model  # what ulm.load returns
        self._net = model.net if hasattr(model, "net") else model.model  # the Transformer module
        self._tok = model.tokenizer
        self._cache: Any = None
        config = model.config
        self.model_id = model_id
        self.max_seq_len = int(config.max_seq_len)
        self.vocab_size = int(config.vocab_size)
        self.eos_ids = frozenset(self._tok.eos_ids if hasattr(self._tok, "eos_ids") else config.eos_token_ids)

    @classmethod
    def load(cls, ref: str | None, model_id: str | None = None, **load_kwargs: Any) -> UlmBackend:
        import ulm
        from ulm.registry import resolve

        source = resolve(ref)
        return cls(ulm.load(str(source.path) if ref is None else ref, **load_kwargs), model_id or source.name)

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special=add_special))

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        return list(self._tok.chat_ids(list(messages)))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids)))

    def allocate(self, rows: int, n_ctx: int) -> None:
        from ulm.kv_cache import KVCache

        param = next(self._net.parameters())
        dtype = getattr(self._model, "cache_dtype", None) or (
            param.dtype if param.dtype.is_floating_point else torch.bfloat16
        )
        self._cache = KVCache(self._model.config, rows, n_ctx, dtype, param.device)

    @torch.inference_mode()
    def forward(self, ids: Sequence[Sequence[int]], rows: Sequence[int], start: Sequence[int]) -> torch.Tensor:
        x = torch.tensor([list(r) for r in ids], dtype=torch.long)  # [B, T]
        row_t = torch.tensor(list(rows), dtype=torch.long)  # [B]
        start_t = torch.tensor(list(start), dtype=torch.long)  # [B]
        logits = self._net(x, cache=self._cache, start=start_t, rows=row_t, last_only=True)  # [B, 1, V]
        self._cache.lengths[row_t] = start_t + x.shape[1]
        return logits[:, -1, :]
