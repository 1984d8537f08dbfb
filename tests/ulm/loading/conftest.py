"""Fixtures for the loader tests: a seeded tiny model as a canonical state dict and as GGUF files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.ulm.loading.gguf_files import write_gguf
from ulm.config import ModelConfig
from ulm.model import canonical_shapes

TINY = ModelConfig(vocab_size=320, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=96, max_seq_len=256,
                   rope_theta=10000.0, norm_eps=1e-6, tie_embeddings=True, bos_token_id=1, eos_token_ids=(2,))


def random_state(config: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: (torch.randn(shape, generator=g) * 0.2 + (1.0 if len(shape) == 1 else 0.0))
            for name, shape in canonical_shapes(config).items()}


@pytest.fixture(scope="session")
def tiny_state() -> dict[str, torch.Tensor]:
    return random_state(TINY)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_state: dict[str, torch.Tensor]) -> Path:
    """A tiny llama GGUF mixing F32 norms, F16 embedding, Q8_0, Q4_0 and Q4_1 matrices."""
    types = {"embed.weight": "F16"}
    for name in tiny_state:
        if ".attn.wq." in name or ".attn.wk." in name:
            types[name] = "Q4_1"
        elif ".attn." in name:
            types[name] = "Q4_0"
        elif ".mlp." in name:
            types[name] = "Q8_0"
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", TINY, tiny_state, types)
