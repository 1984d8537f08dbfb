"""The shared tiny-checkpoint fixture builds a real, loadable, deterministic HF model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_tiny_llama_dir_is_a_loadable_hf_checkpoint(tiny_llama_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((tiny_llama_dir / "config.json").read_text())
    assert config["num_key_value_heads"] == 2 and config["vocab_size"] == 49152
    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    logits = model(torch.tensor([prompt])).logits
    assert logits.shape == (1, len(prompt), 49152)
    assert logits[0, -1].std() > 0.1  # random but not degenerate
