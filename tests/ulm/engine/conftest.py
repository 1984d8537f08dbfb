"""Engine test fixtures: SmolLM2's real tokenizer (once per session) for the scripted backend.

Run: .venv/bin/python -m pytest tests/ulm/engine -q
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_tokenizer_dir: Path) -> Any:
    from tests.ulm.engine.scripted import load_smollm2_tokenizer

    return load_smollm2_tokenizer(smollm2_tokenizer_dir)


@pytest.fixture(scope="session", autouse=True)
def native_kernels() -> None:
    """Build µLM's native kernels before the first engine test: the engine samples with them, and a build
    (~15 s, once per run) inside a test would outlast its short waits."""
    from ulm.kernels.native import library

    library()
