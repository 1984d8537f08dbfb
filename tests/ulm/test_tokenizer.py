"""The checkpoint's tokenizer and chat template: HF dirs, GGUF metadata (converted once, cached).

Run: .venv/bin/python -m pytest tests/ulm/test_tokenizer.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.checkpoints import embedded_gguf_path
from ulm import tokenizer as tkz
from ulm.errors import EmptyPromptError, ModelLoadError
from ulm.loading.cache import entry_dir
from ulm.registry import ModelSource


def test_hf_dir_tokenizer_renders_the_chat_template_without_doubled_specials(tiny_llama_dir: Path) -> None:
    tok = tkz.load_tokenizer(ModelSource("tiny", "hf", tiny_llama_dir))
    messages = [{"role": "user", "content": "hi"}]
    text = tkz.render_chat(tok, messages)
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nhi<|im_end|>" in text
    ids = tkz.encode_chat(tok, messages)
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(im_start) == text.count("<|im_start|>")  # each marker once: no special tokens added twice
    assert tok.decode(ids) == text


def test_stop_ids_include_eos_and_end_of_turn(tiny_llama_dir: Path) -> None:
    tok = tkz.load_tokenizer(ModelSource("tiny", "hf", tiny_llama_dir))
    stops = tkz.stop_token_ids(tok, [2])
    assert tok.convert_tokens_to_ids("<|im_end|>") in stops and 2 in stops


def test_empty_prompt_and_conversation_are_refused(tiny_llama_dir: Path) -> None:
    tok = tkz.load_tokenizer(ModelSource("tiny", "hf", tiny_llama_dir))
    with pytest.raises(EmptyPromptError):
        tkz.encode_prompt(tok, "")
    with pytest.raises(EmptyPromptError):
        tkz.encode_chat(tok, [])
    assert tkz.encode_prompt(tok, "hello world") == tok("hello world")["input_ids"]


def test_dir_without_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="tokenizer"):
        tkz.load_tokenizer(ModelSource("x", "hf", tmp_path))


def test_corrupt_tokenizer_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer"):
        tkz.load_tokenizer(ModelSource("x", "hf", tmp_path))


@pytest.mark.slow
def test_gguf_tokenizer_is_converted_once_then_loaded_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    source = ModelSource("smollm2-135m", "gguf", embedded_gguf_path())
    cold = tkz.load_tokenizer(source)
    cached = entry_dir(source) / "tokenizer"  # in the GGUF's model cache entry, beside its weights
    assert (cached / "tokenizer.json").is_file()

    def no_conversion(path: Path) -> None:
        raise AssertionError("the cached tokenizer should have been used")

    monkeypatch.setattr(tkz, "_from_gguf", no_conversion)
    warm = tkz.load_tokenizer(source)
    text = "Hello 🙂 wörld"
    assert warm(text)["input_ids"] == cold(text)["input_ids"]
    assert warm.chat_template == cold.chat_template
