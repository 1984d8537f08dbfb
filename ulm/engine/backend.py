"""What the engine needs from a model: token ids in, last-position logits out, against a KV cache with
one row per slot. `Backend` is that seam; `UlmBackend` implements it on µLM (a `Transformer` + `KVCache`).

The engine owns positions: it says which cache row each batch row uses and where its tokens start. The
backend owns the cache: it runs the forward and records what it wrote through the cache's own methods
(`KVCache.commit`, `grow`). Tokenisation and the chat template live here too, since they come with the
checkpoint, but the engine itself only ever sees token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from ulm.kv_cache import KVCache

Message = dict[str, Any]  # a chat message or an OpenAI tool object
MIN_CACHE_LEN = 256  # positions per row the KV cache starts with; it doubles up to the context as rows grow


class Backend(Protocol):
    """A loaded model as the engine and server use it."""

    model_id: str  # the short name clients send as `model`
    max_seq_len: int  # the longest context the model supports
    vocab_size: int
    eos_ids: frozenset[int]  # the tokens that end a generation unless a request names its own
    tokenizer: Any  # a transformers fast tokenizer (or a `tokenizers.Tokenizer`), for ulm.detok

    def encode(self, text: str, add_special: bool = False) -> list[int]: ...

    def chat_prompt(self, messages: Sequence[Message], tools: Sequence[Message] | None = None) -> list[int]:
        """The chat template applied to messages (and tools, for a template that reads them), ending with the
        assistant turn's opening."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def embed(self, ids: Sequence[int]) -> torch.Tensor:
        """The mean over the tokens of the last hidden state (the final norm's output), L2-normalised: [D] fp32."""
        ...

    def allocate(self, rows: int, n_ctx: int) -> None:
        """(Re)allocate the KV cache: `rows` rows of up to `n_ctx` positions each."""
        ...

    def forward(self, ids: Sequence[Sequence[int]], rows: Sequence[int], start: Sequence[int]) -> torch.Tensor:
        """Feed ids[b] (rows of any lengths) into cache row rows[b] at positions start[b]..start[b]+len(ids[b])-1;
        the row then holds positions 0..start[b]+len(ids[b])-1 (what it held past start[b] is gone).

        Returns the logits of each row's last position: [B, V].
        """
        ...


class UlmBackend:
    """µLM's Transformer, KV cache and tokenizer behind the Backend seam. On the CPU the cache starts at
    MIN_CACHE_LEN positions a row and doubles (copying what is filled) up to n_ctx as rows get longer, so
    memory follows use: an 8k context answering short prompts keeps a small cache. On CUDA it is allocated
    whole, with one scratch row more, and decode steps replay CUDA graphs (`ulm.cuda.graphs`; `compile`
    puts torch.compile under them)."""

    def __init__(self, net: Any, tokenizer: Any, model_id: str, cache_dtype: torch.dtype | None = None,
                 model_path: str = "", compile: bool = False) -> None:
        from ulm.tokenizer import stop_token_ids

        self._net = net  # ulm.model.Transformer (possibly with quantized linears, or ulm.fast's)
        self.tokenizer = tokenizer
        self.config = net.config
        self.model_id = model_id
        self.model_path = model_path  # the checkpoint's file or directory ("" when not from one)
        self.max_seq_len = int(self.config.max_seq_len)
        self.vocab_size = int(self.config.vocab_size)
        self.eos_ids = frozenset(stop_token_ids(tokenizer, self.config.eos_token_ids))
        self._device = net.device
        self._cache_dtype = cache_dtype or (net.dtype if net.dtype.is_floating_point else torch.float32)
        self._cache: KVCache | None = None
        self._n_ctx = 0
        self._ragged = getattr(net, "forward_ragged", None)  # one native call for rows of mixed lengths
        self.compile = compile  # CUDA: torch.compile under the decode graphs (read by `allocate`)
        self._graphs: Any = None  # ulm.cuda.graphs.GraphDecoder, on CUDA

    @property
    def net(self) -> Any:
        """The module behind the seam (`ulm.model.Transformer`, or the fast mode's)."""
        return self._net

    @property
    def graphs(self) -> Any:
        """The CUDA graph decoder (`ulm.cuda.graphs.GraphDecoder`) after `allocate` on CUDA, else None."""
        return self._graphs

    @property
    def device(self) -> torch.device:
        """Where the model, its cache and the logits `forward` returns live."""
        return self._device

    @classmethod
    def load(cls, ref: str | None, mode: str = "exact", device: str = "cpu", quant: str | None = None,
             compile: bool = False) -> UlmBackend:
        """Load a model by short name, .gguf path or HF dir with `ulm.load`: mode "exact" = fp32 weights,
        "fast" = int4 weight-only linears with bf16 activations (the KV cache takes the activations' dtype);
        on CUDA, "fast" is bf16 weights, int8 or int4 linears with `quant`, and `compile` puts
        torch.compile under the decode graphs."""
        import ulm

        backend = ulm.load(ref, mode=mode, device=device, quant=quant).backend
        backend.compile = compile
        return backend

    @property
    def cache(self) -> KVCache | None:
        """The KV cache (None before `allocate`)."""
        return self._cache

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def chat_prompt(self, messages: Sequence[Message], tools: Sequence[Message] | None = None) -> list[int]:
        from ulm.tokenizer import encode_chat

        return encode_chat(self.tokenizer, list(messages), tools=tools)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    @torch.inference_mode()
    def embed(self, ids: Sequence[int]) -> torch.Tensor:
        x = torch.tensor([list(ids)], dtype=torch.long, device=self._device)  # [1, T]
        pooled = self._net.hidden_states(x)[0].float().mean(dim=0)  # [D]
        return torch.nn.functional.normalize(pooled, dim=0).cpu()

    def allocate(self, rows: int, n_ctx: int) -> None:
        self._n_ctx = n_ctx
        if self._device.type == "cuda":
            from ulm.cuda.graphs import GraphDecoder

            self._cache = KVCache(self.config, rows + 1, n_ctx, self._cache_dtype, self._device)  # + scratch
            self._graphs = GraphDecoder(self._net, self._cache, compile=self.compile)
            return
        self._cache = KVCache(self.config, rows, min(n_ctx, MIN_CACHE_LEN), self._cache_dtype, self._device)

    @torch.inference_mode()
    def forward(self, ids: Sequence[Sequence[int]], rows: Sequence[int], start: Sequence[int]) -> torch.Tensor:
        cache = self._cache
        assert cache is not None, "allocate() first"
        lengths = [len(r) for r in ids]
        end = max(s + n for s, n in zip(start, lengths, strict=True))
        if end > cache.max_len and end <= self._n_ctx:
            cache.grow(min(self._n_ctx, max(end, 2 * cache.max_len)))
        if len(set(lengths)) > 1:  # a step mixing decode rows with a prompt chunk
            logits = None if self._ragged is None else self._ragged([list(r) for r in ids], cache, list(rows),
                                                                    list(start))
            if logits is None:  # no one-call path: each length as a batch of its own
                logits = torch.empty(len(ids), self.vocab_size, device=self._device)
                for n in sorted(set(lengths)):
                    at = [b for b, m in enumerate(lengths) if m == n]
                    logits[at] = self._run([ids[b] for b in at], [rows[b] for b in at], [start[b] for b in at])
        else:
            logits = self._run(ids, rows, start)
        cache.commit(rows, start, lengths)
        return logits

    def _run(self, ids: Sequence[Sequence[int]], rows: Sequence[int], start: Sequence[int]) -> torch.Tensor:
        """One forward of rows of equal lengths: logits of their last positions [B, V]."""
        if self._graphs is not None and len(ids[0]) == 1:
            return self._graphs.step([r[0] for r in ids], rows, start)  # [B, V]
        x = torch.tensor([list(r) for r in ids], dtype=torch.long, device=self._device)  # [B, T]
        if list(rows) == list(range(len(rows))) and all(s == start[0] for s in start):
            # rows 0..B-1 at one position (a single stream, equal prompts): the cache's slice path
            logits = self._net(x, cache=self._cache, start=int(start[0]), last_only=True)  # [B, 1, V]
        else:
            row_t = torch.tensor(list(rows), dtype=torch.long, device=self._device)  # [B]
            start_t = torch.tensor(list(start), dtype=torch.long, device=self._device)  # [B]
            logits = self._net(x, cache=self._cache, start=start_t, rows=row_t, last_only=True)  # [B, 1, V]
        return logits[:, -1, :]
