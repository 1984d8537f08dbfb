"""Streaming detokenization: the deltas concatenate to decode(all ids) and never split a character.

Run: .venv/bin/python -m pytest tests/ulm/test_detok.py -q
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ulm.detok import IncrementalDetokenizer

SAMPLES = ["Hello, wörld! 🙂 中文字符 ça va?", "👩‍👩‍👧 日本語のテキスト  two  spaces\n\n\ttab",
           "Ωμέγα — “quotes” … ❤️🇫🇷", "def f(x):\n    return x  # done"]


@pytest.fixture(scope="module")
def smollm2(smollm2_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))


@pytest.fixture(scope="module")
def metaspace() -> Tokenizer:
    """A SentencePiece-style BPE ("▁" marks a word's leading space, dropped at the start of a decode)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog " * 3, *SAMPLES], trainer)
    return tok


def _stream(tok: Any, ids: list[int], skip: bool) -> list[str]:
    detok = IncrementalDetokenizer(tok, skip_special_tokens=skip)
    return [detok.add(i) for i in ids] + [detok.flush()]


def _ids_strategy(vocab: int, encode: Any) -> st.SearchStrategy[list[int]]:
    random_ids = st.lists(st.integers(0, vocab - 1), min_size=1, max_size=24)
    # slices of real text cut anywhere, so pieces end mid-character, with a random id spliced in
    text_ids = st.tuples(st.sampled_from(SAMPLES), st.integers(0, 40), st.integers(1, 40),
                         st.integers(0, vocab - 1), st.booleans()).map(
        lambda t: _slice(encode(t[0]), t[1], t[2], t[3] if t[4] else None))
    return st.one_of(random_ids, text_ids)


def _slice(ids: list[int], start: int, length: int, extra: int | None) -> list[int]:
    part = ids[start % len(ids):][:length]
    return part + ([extra] if extra is not None else [])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), skip=st.booleans())
def test_byte_level_deltas_concatenate_to_decode(smollm2: Any, data: st.DataObject, skip: bool) -> None:
    ids = data.draw(_ids_strategy(len(smollm2), lambda t: smollm2(t, add_special_tokens=False)["input_ids"]))
    deltas = _stream(smollm2, ids, skip)
    assert "".join(deltas) == smollm2.decode(ids, skip_special_tokens=skip)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_metaspace_deltas_concatenate_to_decode(metaspace: Tokenizer, data: st.DataObject) -> None:
    ids = data.draw(_ids_strategy(metaspace.get_vocab_size(), lambda t: metaspace.encode(t).ids))
    assert "".join(_stream(metaspace, ids, False)) == metaspace.decode(ids, skip_special_tokens=False)


def test_no_delta_holds_half_a_character(smollm2: Any) -> None:
    text = "🙂中é" * 4
    ids = smollm2(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text) // 2  # the emoji is split over several byte-level pieces
    deltas = _stream(smollm2, ids, False)
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == text
    assert any(d == "" for d in deltas[:-1])  # some pieces were held back


def test_leading_space_of_later_words_is_kept(metaspace: Tokenizer) -> None:
    ids = metaspace.encode("the lazy dog").ids
    deltas = _stream(metaspace, ids, False)
    assert "".join(deltas) == "the lazy dog"
    assert any(d.startswith(" ") for d in deltas)
