"""A chat transcript → token ids and a mask of the assistant's tokens, through the tokenizer's chat template.

The transcript is rendered once in full. Each assistant turn i is then located in that text by rendering the
conversation before it with the generation prompt (where the reply starts) and up to it (where the reply,
end-of-turn marker included, ends): a template must render each shorter conversation as a prefix of the
longer one, and one that does not (a template that rewrites earlier turns) is a DataError. The full text is
tokenized once; a token is an assistant token when its first character lies inside an assistant span. So
the mask covers the reply and its end-of-turn marker, and never the role header or another turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ulm.data.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

Message = dict[str, str]


def _render(tok: PreTrainedTokenizerFast, messages: Sequence[Message], generation_prompt: bool) -> str:
    return tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tok: PreTrainedTokenizerFast, messages: Sequence[Message], where: str) -> tuple[str, list[range]]:
    """The rendered transcript and the character ranges of its assistant replies."""
    full = _render(tok, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start_text = _render(tok, messages[:i], True) if i else ""
        end_text = _render(tok, messages[: i + 1], False)
        if not (end_text.startswith(start_text) and full.startswith(end_text)):
            raise DataError(f"{where}: the chat template does not render earlier turns as a prefix of later ones, "
                            "so the assistant tokens cannot be located")
        spans.append(range(len(start_text), len(end_text)))
    return full, spans


def encode_chat_masked(tok: PreTrainedTokenizerFast, messages: Sequence[Message],
                       where: str) -> tuple[list[int], list[int]]:
    """(token ids, mask with 1 on assistant tokens) of a transcript rendered with the chat template."""
    if not getattr(tok, "chat_template", None):
        raise DataError(f"{where}: the tokenizer has no chat template to render chat transcripts with")
    text, spans = assistant_spans(tok, messages, where)
    enc = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    mask = [int(any(start in span for span in spans)) for start, _ in enc.offsets]
    return list(enc.ids), mask
