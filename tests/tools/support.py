"""Helpers shared by the tools tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden ones included) → bytes; for "nothing changed, nothing left over"."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
