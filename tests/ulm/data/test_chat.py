"""Chat transcripts: rendered with the tokenizer's chat template, the mask on the assistant's tokens only (its
reply and end-of-turn marker; never a role header, the system prompt or a user turn).

Run: .venv/bin/python -m pytest tests/ulm/data/test_chat.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ulm.data.build import BuildOptions, build_dataset
from ulm.data.chat import encode_chat_masked
from ulm.data.dataset import open_dataset
from ulm.data.errors import DataError
from ulm.data.tokenizers import load_data_tokenizer

CHATS = [
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4."}],
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Teal."}, {"role": "user", "content": "Another?"},
     {"role": "assistant", "content": [{"type": "text", "text": "Ochre"}, {"type": "text", "text": "!"}]}],
]


def replies(chat: list[dict]) -> list[str]:
    out = []
    for m in chat:
        if m["role"] == "assistant":
            content = m["content"] if isinstance(m["content"], str) else "".join(p["text"] for p in m["content"])
            out.append(content + "<|im_end|>\n")
    return out


@pytest.mark.parametrize("which", ["smollm2", "small-bpe"])
def test_the_mask_covers_the_assistant_replies_and_nothing_else(which: str, smollm2_tokenizer_dir: Path,
                                                                small_tokenizer_dir: Path) -> None:
    tok = load_data_tokenizer(str(smollm2_tokenizer_dir if which == "smollm2" else small_tokenizer_dir))
    for chat in CHATS:
        normal = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
                   else "".join(p["text"] for p in m["content"])} for m in chat]
        ids, mask = encode_chat_masked(tok, normal, "test")
        assert len(ids) == len(mask)
        assert ids == tok(tok.apply_chat_template(normal, tokenize=False), add_special_tokens=False)["input_ids"]
        # Each maximal run of masked tokens decodes to one whole reply with its end-of-turn marker.
        runs, current = [], []
        for token, m in zip(ids, mask, strict=True):
            if m:
                current.append(token)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        assert [tok.decode(r) for r in runs] == replies(chat)
        unmasked = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        assert all(m["content"] in unmasked for m in normal if m["role"] != "assistant")
        assert "<|im_start|>assistant\n" in unmasked


def test_chat_jsonl_builds_a_masked_dataset(tmp_path: Path, small_tokenizer_dir: Path) -> None:
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CHATS) + "\n" +
                     json.dumps({"text": "def f():\n    return 1\n"}) + "\n")
    manifest = build_dataset([str(chats)], tmp_path / "d", BuildOptions(tokenizer=str(small_tokenizer_dir),
                                                                        val_fraction=0.0))
    train = manifest["splits"]["train"]
    assert manifest["has_mask"] and train["documents"] == 3 and train["chat_documents"] == 2
    ds = open_dataset(tmp_path / "d")
    tok = load_data_tokenizer(str(small_tokenizer_dir))
    mask = ds.train.mask(0, ds.train.n_tokens)
    assert int(mask.sum()) == train["trained_tokens"]
    lines = [json.loads(line) for line in (tmp_path / "d" / "documents.jsonl").read_text().splitlines()]
    assert [r["line"] for r in lines] == [1, 2, 4]  # the blank line 3 is skipped
    for i, record in enumerate(lines):
        start, end = int(ds.train.doc_starts[i]), int(ds.train.doc_starts[i + 1])
        doc_mask = mask[start:end]
        assert not doc_mask[-1] if record["kind"] == "chat" else doc_mask.all()  # text: every token trained
    trained = tok.decode(ds.train.tokens(0, ds.train.n_tokens)[mask].tolist())
    assert trained.startswith("".join(replies(CHATS[0]) + replies(CHATS[1])))


def test_a_template_that_rewrites_earlier_turns_is_refused(small_tokenizer_dir: Path) -> None:
    tok = load_data_tokenizer(str(small_tokenizer_dir))
    tok.chat_template = "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(DataError, match="prefix"):
        encode_chat_masked(tok, CHATS[0], "chats.jsonl:1")
    tok.chat_template = None
    with pytest.raises(DataError, match="no chat template"):
        encode_chat_masked(tok, CHATS[0], "chats.jsonl:1")
