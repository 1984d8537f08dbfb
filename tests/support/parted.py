"""A model in pieces the way the coder models ship: plain byte chunks, each inside an installed distribution
(`<dist>-<version>.dist-info` + `<package>/data/partNN.bin` on a sys.path entry), found by importlib.metadata
exactly as installed wheels are. `install_pieces` writes them and returns the `PartedModel` describing them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ulm.registry import PartedModel

VERSION = "0.0.1"


def cut(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """`data` in pieces of `sizes` bytes (the last piece takes the rest)."""
    pieces, at = [], 0
    for n in sizes:
        pieces.append(data[at : at + n])
        at += n
    return [*pieces, data[at:]] if at < len(data) else pieces


def install_pieces(site: Path, name: str, pieces: Sequence[bytes], stem: str = "cbtest_piece") -> PartedModel:
    """Write each piece as its own distribution under `site` (put `site` on sys.path to 'install' them)."""
    for i, piece in enumerate(pieces, start=1):
        package = f"{stem}{i}"
        info = site / f"{package}-{VERSION}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {stem.replace('_', '-')}{i}\n"
                                       f"Version: {VERSION}\n", encoding="utf-8")
        data = site / package / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / f"part{i:02d}.bin").write_bytes(piece)
    whole = b"".join(pieces)
    return PartedModel(name=name, description="a test model in pieces", distribution=stem.replace("_", "-") + "{i}",
                       pieces=len(pieces), version=VERSION, resource=stem + "{i}/data/part{i:02d}.bin",
                       size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
