"""µLM: cb's own PyTorch transformer, its engine, server and pipelines.

Nothing heavy happens at import: `import ulm` does not import torch. The public API is `ulm.load`,
imported lazily on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from ulm.api import load

        return load
    raise AttributeError(f"module 'ulm' has no attribute {name!r}")
