"""Helpers shared by the tools tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from tools import Journal, accept_all, apply_batch, file_version, parse_proposals


def tree_state(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden ones included) → bytes; for "nothing changed, nothing left over"."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write(path: Path, data: bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` (folders made), with `mode` if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


def v(path: Path) -> str:
    """The version of the file at `path` now."""
    return file_version(path.read_bytes())


def apply_text(root: Path, text: str, journal: Journal, confirm=accept_all):
    """Parse a model answer (it must parse without errors) and apply its proposals under `root`."""
    parsed = parse_proposals(text)
    assert parsed.errors == ()
    return apply_batch(parsed.proposals, root, journal=journal, confirm=confirm)


def one(text: str):
    """The one proposal `text` holds (no parse errors allowed)."""
    result = parse_proposals(text)
    assert result.errors == (), result.errors
    assert len(result.proposals) == 1, result.proposals
    return result.proposals[0]


def errors(text: str) -> list[str]:
    """The parse errors of `text`, as strings."""
    return [str(e) for e in parse_proposals(text).errors]
