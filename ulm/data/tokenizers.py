"""The tokenizer a dataset is built with: where it comes from, what identifies it, how documents end.

- `load_data_tokenizer(ref)`: REF is a directory holding tokenizer files (tokenizer.json: a dataset's
  `tokenizer/`, an HF model directory) or any model reference `ulm.registry.resolve` takes (a short name,
  a .gguf file: its tokenizer comes from the GGUF metadata, cached). DataError when there is none.
- `tokenizer_id(tok)`: "sha256:<16 hex>" over the tokenizer's serialised form (vocabulary, merges,
  normalisation, special tokens) and its chat template: two tokenizers with one id encode alike.
- `separator_id(tok)`: the token that ends every document: `<|endoftext|>` when the vocabulary has it (the
  pre-training convention of GPT-2-style vocabularies, SmolLM's included), else the EOS token.
- `token_dtype(vocab_size)`: uint16 for up to 65536 ids, else uint32.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ulm.data.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"


def load_data_tokenizer(ref: str) -> PreTrainedTokenizerFast:
    """The tokenizer REF names (see the module docstring); DataError when it has none."""
    from ulm.errors import UlmError
    from ulm.registry import ModelNotFoundError, ModelSource, resolve
    from ulm.tokenizer import load_tokenizer

    path = Path(ref).expanduser()
    try:
        if path.is_dir() and (path / "tokenizer.json").is_file():
            return load_tokenizer(ModelSource(path.name, "hf", path))
        return load_tokenizer(resolve(ref))
    except (UlmError, ModelNotFoundError) as e:
        raise DataError(f"tokenizer '{ref}': {str(e).splitlines()[0]}") from None


def tokenizer_id(tok: PreTrainedTokenizerFast) -> str:
    """A short id of what the tokenizer does (see the module docstring)."""
    digest = hashlib.sha256(tok.backend_tokenizer.to_str().encode())
    digest.update(b"\0" + (getattr(tok, "chat_template", None) or "").encode())
    return "sha256:" + digest.hexdigest()[:16]


def separator_id(tok: PreTrainedTokenizerFast) -> int:
    """The id of the token that ends every document."""
    vocab = tok.get_vocab()
    if END_OF_TEXT in vocab:
        return int(vocab[END_OF_TEXT])
    if tok.eos_token_id is None:
        raise DataError(f"the tokenizer has neither {END_OF_TEXT} nor an EOS token to end documents with")
    return int(tok.eos_token_id)


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype holding every token id."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")
