"""Parity of the embedded SmolLM2-135M-Instruct (Q4_1 GGUF) with HF transformers loading the same file, fp32:
logits on a 64-token chat prompt to 1e-3, and the first 32 greedy tokens of µLM's cached decode loop equal
transformers' greedy tokens.

Run: .venv/bin/python -m pytest tests/ulm/test_parity_embedded.py -q   (slow: ~1 min; HF's load is ~20 s)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from ulm.kv_cache import KVCache
from ulm.loading import load_checkpoint
from ulm.model import Transformer, build_model
from ulm.registry import resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

SYSTEM = "You are a careful, concise coding assistant working in a Linux terminal."
USER = ("Explain in two sentences what a Python list comprehension is, and show a short example that squares "
        "the even numbers from one to ten. Then say when a plain for loop reads better.")
N_GREEDY = 32


@pytest.fixture(scope="module")
def prompt(smollm2_tokenizer_dir: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    ids: Any = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert len(ids) == 64
    return torch.tensor([ids])


@pytest.fixture(scope="module")
def oracle() -> Any:
    """transformers' own model of the embedded GGUF (its dequantisation), loaded once: ~20 s."""
    from transformers import AutoModelForCausalLM

    path = resolve("smollm2-135m").path
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def model() -> Transformer:
    # Module scope runs before the per-test CB_HOME redirect: read the GGUF directly, never the user's cache.
    config, state = load_checkpoint(resolve("smollm2-135m"), torch.float32, use_cache=False)
    return build_model(config, state, torch.float32)


@torch.inference_mode()
def test_prompt_logits_match_transformers(model: Transformer, oracle: Any, prompt: torch.Tensor) -> None:
    ours, theirs = model(prompt), oracle(prompt).logits
    assert ours.shape == theirs.shape == (1, 64, 49152)
    assert (ours - theirs).abs().max().item() < 1e-3


@torch.inference_mode()
def test_greedy_tokens_of_the_cached_loop_match_transformers(model: Transformer, oracle: Any,
                                                              prompt: torch.Tensor) -> None:
    cache = KVCache(model.config, max_batch=1, max_len=128)
    logits = model(prompt, cache=cache, start=0, last_only=True)  # [1, 1, V]
    cache.advance(0, prompt.shape[1])
    ours: list[int] = []
    for _ in range(N_GREEDY):
        token = logits[:, -1].argmax(-1, keepdim=True)  # [1, 1]
        ours.append(int(token))
        logits = model(token, cache=cache, start=cache.lengths[:1])
        cache.advance(0, 1)

    out = oracle(prompt, use_cache=True)
    theirs: list[int] = []
    for _ in range(N_GREEDY):
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        theirs.append(int(token))
        out = oracle(token, past_key_values=out.past_key_values, use_cache=True)
    assert ours == theirs
