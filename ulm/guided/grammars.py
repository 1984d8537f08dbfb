"""The tokenizer prepared for llguidance once, and the grammar compilers a request's text goes through.

- `Grammars(tokenizer, vocab_size, eos_ids)`: wraps a transformers fast tokenizer (or a `tokenizers`
  Tokenizer) as an `LLTokenizer` of the model's vocabulary size (rows of the logits past the tokenizer's own
  tokens are never allowed) whose end tokens are the model's stop tokens.
- `lark(text)`: a Lark grammar in llguidance's dialect (cb sends these, with a `%llguidance {}` header);
  `gbnf(text)`: llama.cpp's GBNF (rules written `name ::= ...`), converted to Lark by llguidance;
  `grammar(text)`: either, told apart by `is_gbnf`; `json_schema(schema)`: JSON text matching a JSON Schema
  (None = any JSON object), in compact form (no free whitespace between tokens: a small model under a
  flexible-whitespace grammar can loop on blank lines); `from_llguidance(spec)`: an llguidance grammar
  (JSON), for grammars built in code (`ulm.server.structured`). Each returns a fresh `Constraint`, compiled
  for one request (about 5-40 ms for cb's edit grammars; it drops the GIL). `special_token(text)`: the id
  of a special token spelled `text`, for grammars that must name it.
- `GrammarError`: the grammar is invalid; its message is llguidance's (position and what it expected).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from ulm.guided.constraint import Constraint

_LARK_MARKERS = re.compile(r"(?m)^\s*(%llguidance\b|start\s*:)")
JSON_OPTIONS = {"whitespace_flexible": False}  # llguidance's compact separators: ", " and ": "


class GrammarError(ValueError):
    """llguidance refused the grammar."""


def is_gbnf(text: str) -> bool:
    """GBNF rather than Lark: it defines a rule with `::=` and has no Lark start rule or llguidance header."""
    return "::=" in text and _LARK_MARKERS.search(text) is None


class Grammars:
    """Compiles grammars against one model's tokenizer (prepared once, here)."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: Iterable[int]) -> None:
        import llguidance

        eos = sorted(eos_ids)
        backend = copy.copy(getattr(tokenizer, "backend_tokenizer", tokenizer))  # a tokenizers.Tokenizer
        backend.no_padding()
        backend.no_truncation()
        self.tokenizer = llguidance.LLTokenizer(backend.to_str(), n_vocab=vocab_size, eos_token=eos or None)
        self.vocab_size = vocab_size

    def special_token(self, text: str) -> int | None:
        """The id of `text` when the vocabulary has it as one special token (Qwen's `<tool_call>`), else None:
        a grammar must then name it as `<[id]>`, since the token's bytes are not the text's."""
        ids = self.tokenizer.tokenize_str(text, parse_special=True)
        return ids[0] if len(ids) == 1 and self.tokenizer.is_special_token(ids[0]) else None

    def grammar(self, text: str) -> Constraint:
        """Lark or GBNF (see `is_gbnf`)."""
        return self.gbnf(text) if is_gbnf(text) else self.lark(text)

    def lark(self, text: str) -> Constraint:
        import llguidance

        return self._compile(llguidance.LLMatcher.grammar_from_lark(text))

    def gbnf(self, text: str) -> Constraint:
        import llguidance

        try:
            spec = llguidance.grammar_from("gbnf", text)
        except ValueError as exc:
            raise GrammarError(str(exc)) from None
        return self._compile(spec)

    def json_schema(self, schema: dict[str, Any] | None) -> Constraint:
        import llguidance

        try:
            spec = llguidance.LLMatcher.grammar_from_json_schema(schema or {"type": "object"}, overrides=JSON_OPTIONS)
        except ValueError as exc:
            raise GrammarError(f"not a JSON schema: {exc}") from None
        return self._compile(spec)

    def from_llguidance(self, spec: dict[str, Any]) -> Constraint:
        """An llguidance grammar given as data ({"grammars": [...]})."""
        return self._compile(json.dumps(spec))

    def _compile(self, spec: str) -> Constraint:
        import llguidance

        matcher = llguidance.LLMatcher(self.tokenizer, spec, log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error().strip())
        return Constraint(matcher)
