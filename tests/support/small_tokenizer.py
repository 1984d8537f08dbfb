"""A small byte-level BPE tokenizer trained in about a second, for training tests that must run in seconds.

SmolLM2's 49152-token vocabulary makes the LM head the whole cost of a tiny model's step; a 512-token
vocabulary learned from the same corpus keeps the model tiny end to end. `save_small_bpe(path, texts)`
writes HF tokenizer files (tokenizer.json, tokenizer_config.json with a ChatML chat template) that
`AutoTokenizer` and `ulm data build --tokenizer PATH` load. Deterministic: the same texts give the same
tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def save_small_bpe(path: Path, texts: Iterable[str], vocab_size: int = 512) -> Path:
    """Train a byte-level BPE of `vocab_size` tokens on `texts` and save it as an HF tokenizer into `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>")
    fast.chat_template = CHATML
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(path))
    return path
