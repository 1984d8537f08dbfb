"""The tokenizer and chat template of a checkpoint, as a transformers `PreTrainedTokenizerFast`.

- `load_tokenizer(source)` takes a resolved `ModelSource` (see `ulm.registry.resolve`):
  - an HF dir: its own tokenizer files (tokenizer.json, tokenizer_config.json, chat template);
  - a GGUF file: the tokenizer built by transformers from the GGUF's metadata (about 6 s), converted once
    and kept as HF tokenizer files in the file's model cache entry (`ulm.loading.cache`: `tokenizer/`,
    written atomically; a damaged copy is built again; `cached_tokenizer_dir(source)` is where), so later
    loads take ~0.2 s.
- `encode_prompt(tok, text)` encodes raw text the way the tokenizer's config says (BOS when it adds one).
- `render_chat(tok, messages)` renders messages with the checkpoint's chat template (text, generation
  prompt added); `encode_chat(tok, messages)` encodes that text *without* adding special tokens again (the
  template already holds them).
- `stop_token_ids(tok, eos_ids)` are the ids that end generation: the model's EOS ids plus the tokenizer's
  EOS and, for chat-tuned templates, the end-of-turn token.

Errors are `ulm.errors.ModelLoadError` (missing or unreadable tokenizer) and `ulm.errors.EmptyPromptError`.
transformers is imported inside the functions: `import ulm.tokenizer` stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ulm.errors import EmptyPromptError, ModelLoadError
from ulm.registry import ModelSource

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

TOKENIZER = "tokenizer"  # the artefact's name in a GGUF's model cache entry
# End-of-turn markers of common chat templates; generation stops on them when the vocabulary has them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>")

Message = dict[str, Any]


def load_tokenizer(source: ModelSource) -> PreTrainedTokenizerFast:
    """The checkpoint's tokenizer (with its chat template), from an HF dir or a GGUF file (cached)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if source.kind == "hf":
        if not (source.path / "tokenizer.json").is_file() and not (source.path / "tokenizer.model").is_file():
            raise ModelLoadError(f"{source.path}: no tokenizer.json (or tokenizer.model) in the model directory")
        return _from_dir(source.path)
    from ulm.loading import cache

    cached = cached_tokenizer_dir(source)
    if cached is not None:
        with contextlib.suppress(ModelLoadError):  # damaged: built again below
            return _from_dir(cached)
    tok = _from_gguf(source)
    with contextlib.suppress(OSError):  # the cache is only an optimisation: the tokenizer in memory is still good
        cache.save_artefact(source, TOKENIZER, lambda where: tok.save_pretrained(str(where)))
    return tok


def cached_tokenizer_dir(source: ModelSource) -> Path | None:
    """The tokenizer files kept for a GGUF source (a dir with tokenizer.json), None when there are none yet."""
    from ulm.loading import cache

    cached = cache.artefact(source, TOKENIZER)
    return cached if cached is not None and (cached / "tokenizer.json").is_file() else None


def _from_dir(path: Path) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # OSError, ValueError, ImportError (a slow-only tokenizer), JSON errors: all unusable
        raise ModelLoadError(f"{path}: cannot load the tokenizer: {_first_line(exc)}") from exc


def _from_gguf(source: ModelSource) -> PreTrainedTokenizerFast:
    """Built by transformers from the GGUF's metadata alone: µLM's reader copies the metadata into a small
    tensor-less GGUF in a temp dir (a model in pieces has no one file to give transformers, and reading
    only the metadata spares transformers' slow parse of the whole file), which transformers converts."""
    from transformers import AutoTokenizer

    from ulm.loading.gguf import open_gguf
    from ulm.loading.gguf_file import write_metadata_only

    where = source.name if source.parts else source.path
    gf = open_gguf(source)
    with tempfile.TemporaryDirectory(prefix="ulm-tokenizer-") as tmp:
        try:
            write_metadata_only(gf, Path(tmp) / "metadata.gguf")
            return AutoTokenizer.from_pretrained(tmp, gguf_file="metadata.gguf", local_files_only=True)
        except Exception as exc:  # transformers raises many types for a bad GGUF; all mean "unusable file"
            raise ModelLoadError(f"{where}: cannot read the tokenizer from the GGUF metadata: "
                                 f"{_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def encode_prompt(tok: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of a raw text prompt (with BOS when the tokenizer adds one); EmptyPromptError if none."""
    if not text:
        raise EmptyPromptError("the prompt is empty")
    ids = list(tok(text, add_special_tokens=True)["input_ids"])
    if not ids:
        raise EmptyPromptError("the prompt has no tokens")
    return ids


def render_chat(tok: PreTrainedTokenizerFast, messages: Sequence[Message], add_generation_prompt: bool = True,
                tools: Sequence[Message] | None = None) -> str:
    """The chat template applied to `messages` ([{"role", "content"}, ...]) and, for a template that reads
    them, `tools` (OpenAI tool objects), as text."""
    if not messages:
        raise EmptyPromptError("the conversation has no messages")
    if not getattr(tok, "chat_template", None):
        raise ModelLoadError("this model's tokenizer has no chat template; give a raw prompt instead "
                             "(ulm generate --raw)")
    return tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt,
                                   tools=list(tools) if tools else None)


def encode_chat(tok: PreTrainedTokenizerFast, messages: Sequence[Message], add_generation_prompt: bool = True,
                tools: Sequence[Message] | None = None) -> list[int]:
    """Token ids of the rendered conversation; the template already holds BOS and turn markers."""
    text = render_chat(tok, messages, add_generation_prompt, tools)
    return list(tok(text, add_special_tokens=False)["input_ids"])


def stop_token_ids(tok: PreTrainedTokenizerFast | None, eos_ids: Iterable[int] = ()) -> tuple[int, ...]:
    """Token ids that end a generation: the model's EOS ids, the tokenizer's EOS, end-of-turn markers (the
    model's alone without a tokenizer: a backend driven by token ids, as the GPU benchmark's)."""
    ids: list[int] = list(eos_ids)
    if tok is None:
        return tuple(dict.fromkeys(ids))
    if tok.eos_token_id is not None:
        ids.append(int(tok.eos_token_id))
    vocab = tok.get_vocab()
    ids.extend(vocab[name] for name in END_OF_TURN_TOKENS if name in vocab and name in tok.all_special_tokens)
    return tuple(dict.fromkeys(ids))
