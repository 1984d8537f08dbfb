"""Parity with HF transformers (the oracle) on seeded random tiny checkpoints, in fp32:
Llama, Mistral (incl. a sliding window) and Qwen2 (q/k/v bias) HF directories, rope-scaled variants
(linear, yarn, llama3), and tiny GGUF files read both by µLM and by transformers' GGUF loader.

Run: .venv/bin/python -m pytest tests/ulm/test_parity_hf.py -q   (slow: ~20 s, mostly transformers)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.checkpoints import save_tiny_hf
from ulm.config import RopeScaling
from ulm.loading import load_checkpoint, read_hf
from ulm.model import build_model
from ulm.registry import ModelSource

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

ATOL = 1e-4
IDS = torch.randint(0, 49152, (2, 48), generator=torch.Generator().manual_seed(0))

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", {}),
    "mistral": ("mistral", {}),
    "qwen2": ("qwen2", {}),
    "mistral-sliding-window": ("mistral", {"sliding_window": 16}),
    "llama-rope-linear": ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 4.0}}),
    "qwen2-rope-yarn": ("qwen2", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                   "original_max_position_embeddings": 32}}),
    "llama-rope-llama3": ("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 32}}),
}


@pytest.fixture(scope="module")
def no_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no_tokenizer")


def hf_logits(path: Path, **kwargs: Any) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kwargs).eval()
    with torch.inference_mode():
        return model(IDS).logits


def ulm_logits(path: Path, kind: str = "hf") -> torch.Tensor:
    config, state = load_checkpoint(ModelSource(path.name, kind, path), torch.float32)
    with torch.inference_mode():
        return build_model(config, state)(IDS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hf_directory_logits_match_transformers(variant: str, tmp_path: Path, no_tokenizer: Path) -> None:
    arch, overrides = VARIANTS[variant]
    path = save_tiny_hf(tmp_path / variant, arch, tokenizer_dir=no_tokenizer, **overrides)
    ours, theirs = ulm_logits(path), hf_logits(path)
    assert theirs.abs().max() > 1.0  # logits that differ visibly between tokens
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    if overrides:  # the scaling or window really changes the result: parity is not parity by omission
        plain = save_tiny_hf(tmp_path / "plain", arch, tokenizer_dir=no_tokenizer)
        assert (ulm_logits(plain) - ours).abs().max() > 1e-2


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_gguf_logits_match_transformers_gguf_loader(arch: str, tmp_path: Path, no_tokenizer: Path) -> None:
    from tests.ulm.loading.gguf_files import write_gguf

    hf_dir = save_tiny_hf(tmp_path / "hf", arch, tokenizer_dir=no_tokenizer)
    config, state = read_hf(hf_dir)
    types = {}
    for name in state:  # llama's permuted Q/K rows in several block types
        if ".attn.wq." in name and name.endswith("weight"):
            types[name] = "Q4_1"
        elif ".attn.wk." in name and name.endswith("weight"):
            types[name] = "Q4_0"
        elif ".mlp." in name or name == "embed.weight":
            types[name] = "Q8_0"
    gguf_path = write_gguf(tmp_path / f"{arch}.gguf", config, state, types)
    ours = ulm_logits(gguf_path, kind="gguf")
    theirs = hf_logits(tmp_path, gguf_file=gguf_path.name)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def llama_cpp_rope_factors(head_dim: int, theta: float, factor: float, low: float, high: float,
                           original: int) -> list[float]:
    """What llama.cpp's convert_hf_to_gguf stores as rope_freqs.weight for Llama 3.1-style scaling."""
    import math

    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * theta ** (i / head_dim)
        if wavelen < original / high:
            out.append(1.0)
        elif wavelen > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


def test_gguf_rope_freqs_match_transformers_llama3_scaling(tmp_path: Path, no_tokenizer: Path) -> None:
    import numpy as np

    from tests.ulm.loading.gguf_files import write_gguf

    arch, overrides = VARIANTS["llama-rope-llama3"]
    hf_dir = save_tiny_hf(tmp_path / "hf", arch, tokenizer_dir=no_tokenizer, **overrides)
    config, state = read_hf(hf_dir)
    assert config.head_dim is not None
    factors = np.array(llama_cpp_rope_factors(config.head_dim, config.rope_theta, 8.0, 1.0, 4.0, 32), np.float32)
    assert len(set(factors.round(4).tolist())) > 2  # high, low and smoothed bands all present
    gguf_path = write_gguf(tmp_path / "llama31.gguf", config.with_(rope_scaling=RopeScaling()),
                           state, raw={"rope_freqs.weight": (factors, "F32")})
    gguf_config, _ = load_checkpoint(ModelSource("l", "gguf", gguf_path), use_cache=False)
    assert gguf_config.rope_scaling.freq_factors is not None
    torch.testing.assert_close(ulm_logits(gguf_path, kind="gguf"), hf_logits(hf_dir), atol=ATOL, rtol=0)
