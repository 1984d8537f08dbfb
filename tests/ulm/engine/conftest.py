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
