"""Suite-wide fixtures. Every test runs with CB_HOME in its own temp dir, so no test reads or writes
the real user's config, state, cache or sockets.

Run the whole suite with `make test`; a part with e.g. `.venv/bin/python -m pytest tests/cb -q`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Model servers the tests start share 2 cores with pytest and each other: spinning OpenMP waits would
    starve them (20-30 ms per tiny-model token instead of ~1 ms). Set before anything loads torch, so every
    process the suite starts inherits it."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # µLM's native kernels are built once for the whole run (each test's CB_HOME would otherwise rebuild them
    # in every server the suite starts).
    if "ULM_KERNEL_DIR" not in os.environ:
        os.environ["ULM_KERNEL_DIR"] = tempfile.mkdtemp(prefix="ulm-kernels-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop("ULM_KERNEL_DIR"), ignore_errors=True))


@pytest.fixture(autouse=True)
def cb_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CB_HOME (and the XDG dirs, for code that bypasses it) at a fresh temp dir; no OpenAI settings leak in."""
    home = tmp_path_factory.mktemp("cb_home")
    monkeypatch.setenv("CB_HOME", str(home))
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "OPENAI_API_KEY",
                "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's tokenizer files (tokenizer.json, chat template), built once per test session."""
    from tests.support.checkpoints import save_smollm2_tokenizer

    return save_smollm2_tokenizer(tmp_path_factory.mktemp("smollm2_tokenizer"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer_dir: Path) -> Path:
    """A seeded random tiny Llama (2 layers, dim 64, GQA 4/2) as an HF directory with SmolLM2's tokenizer."""
    from tests.support.checkpoints import save_tiny_hf

    return save_tiny_hf(tmp_path_factory.mktemp("tiny_llama"), "llama", tokenizer_dir=smollm2_tokenizer_dir)
