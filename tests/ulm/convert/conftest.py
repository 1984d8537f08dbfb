"""Source models for the conversion tests: seeded random HF checkpoints (Llama with GQA and a tied head, Qwen2 with
q/k/v biases and an untied head) carrying SmolLM2's real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer_dir: Path) -> Path:
    from tests.support.checkpoints import save_tiny_hf

    return save_tiny_hf(tmp_path_factory.mktemp("tiny_qwen2"), "qwen2", tokenizer_dir=smollm2_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_mha_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer_dir: Path) -> Path:
    """A Llama with 4 query and 4 key/value heads (plain MHA)."""
    from tests.support.checkpoints import save_tiny_hf

    return save_tiny_hf(tmp_path_factory.mktemp("tiny_mha"), "llama", tokenizer_dir=smollm2_tokenizer_dir,
                        num_key_value_heads=4)
