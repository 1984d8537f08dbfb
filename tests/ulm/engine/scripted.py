"""A scripted Backend for engine and server tests: it "generates" a fixed token script after any prompt,
through the real engine (slots, batching, sampling, detokenizer, stop strings) and SmolLM2's real
tokenizer. The next token is script[k] when the row's last k tokens are the script's first k, else
script[0]; after the script comes EOS. Its logits put all the mass on that token, so greedy and seeded
sampling agree. It records every forward, so tests can check batching and prefix reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

EOS = 2


class ScriptedBackend:
    def __init__(self, tokenizer: Any, script: Sequence[int], model_id: str = "scripted", max_seq_len: int = 512,
                 fail_on_row: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.script = list(script)
        self.model_id = model_id
        self.max_seq_len = max_seq_len
        self.vocab_size = len(tokenizer)
        self.eos_ids = frozenset({EOS})
        self.rows: list[list[int]] = []
        self.forwards: list[tuple[int, ...]] = []  # the tokens of each row, for every forward

    @classmethod
    def from_text(cls, tokenizer: Any, text: str, **kwargs: Any) -> ScriptedBackend:
        return cls(tokenizer, tokenizer.encode(text, add_special_tokens=False), **kwargs)

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special))

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        from ulm.tokenizer import encode_chat

        return encode_chat(self.tokenizer, messages)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids)))

    def allocate(self, rows: int, n_ctx: int) -> None:
        self.rows = [[] for _ in range(rows)]
        self.n_ctx = n_ctx

    def _next(self, tokens: list[int]) -> int:
        for k in range(min(len(self.script), len(tokens)), 0, -1):
            if tokens[-k:] == self.script[:k]:
                return self.script[k] if k < len(self.script) else EOS
        return self.script[0] if self.script else EOS

    def forward(self, ids: Sequence[Sequence[int]], rows: Sequence[int], start: Sequence[int]) -> torch.Tensor:
        self.forwards.append(tuple(len(row_ids) for row_ids in ids))
        logits = torch.zeros(len(ids), self.vocab_size)  # [B, V]
        for b, (row_ids, row, pos) in enumerate(zip(ids, rows, start, strict=True)):
            assert pos + len(row_ids) <= self.n_ctx, "the engine wrote past the context"
            assert len(self.rows[row]) >= pos, "the engine skipped positions"
            self.rows[row] = self.rows[row][:pos] + list(row_ids)
            logits[b, self._next(self.rows[row])] = 40.0
        return logits


def load_smollm2_tokenizer(path: Path) -> Any:
    from ulm.registry import ModelSource
    from ulm.tokenizer import load_tokenizer

    return load_tokenizer(ModelSource("smollm2", "hf", path))
