"""What a training run is: TrainConfig (how to train) and RunConfig (the model's config + TrainConfig).

A run's config is assembled in layers, each overriding the one before:

1. a preset (`presets.py`): a model shape and the training defaults that suit it;
2. a config file, JSON or TOML, of this shape (every key optional):

       preset = "tiny"                      # the base, unless --preset names another
       [model]                              # ModelConfig fields (ulm/config.py)
       n_kv_heads = 1
       rope_theta = 10000.0
       rope_scaling = { kind = "linear", factor = 2.0 }
       [train]                              # TrainConfig fields (below)
       lr = 1e-3
       schedule = "wsd"

3. flags, and `--set section.field=value` for any field (the value is read as JSON when it parses, e.g.
   `--set model.tie_embeddings=false`, `--set train.betas=[0.9,0.99]`, else as a string).

Stdlib only. Every bad value is a ConfigError naming the field.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ulm.config import ConfigError, ModelConfig

DTYPES = ("auto", "fp32", "bf16")
SCHEDULES = ("cosine", "wsd", "constant")
SECTIONS = ("model", "train")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: batch, optimiser, schedule, precision, cadence."""

    steps: int = 1000  # optimiser steps of the whole run
    seq_len: int = 256  # tokens per sequence
    batch_size: int = 16  # sequences per optimiser step, over all ranks and micro-steps (the global batch)
    micro_batch: int = 8  # sequences per forward pass on one rank
    lr: float = 3e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # the schedule ends at lr · min_lr_ratio
    warmup_steps: int = 100  # linear warm-up from 0
    schedule: str = "cosine"  # after warm-up: cosine decay, wsd (stable, then a linear decay), or constant
    decay_fraction: float = 0.2  # wsd: share of the steps spent in the final decay
    weight_decay: float = 0.1  # AdamW decay of matrices (not norms, biases or embeddings)
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 = off
    dtype: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU), fp32, bf16
    compile: bool | None = None  # torch.compile the model; None = on GPU only
    device: str = "auto"  # auto (cuda when available), cpu, cuda
    use_mask: bool = False  # train only on tokens the dataset's mask marks (assistant tokens of chats)
    eval_every: int = 100  # validate every this many steps (and at the end); 0 = only at the end
    eval_sequences: int = 32  # validation sequences (the first ones of the val split, in order)
    log_every: int = 10  # log every this many steps
    save_every: int = 500  # checkpoint every this many steps (and at the end); 0 = only at the end
    keep_checkpoints: int = 2  # checkpoints kept on disk (the newest)
    seed: int = 0  # weight init and data order
    init_std: float = 0.02  # std of the weight init (residual projections get std / sqrt(2 · n_layers))

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        positive = ("steps", "seq_len", "batch_size", "micro_batch", "eval_sequences", "log_every",
                    "keep_checkpoints")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every", "weight_decay", "grad_clip", "lr"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be ≥ 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 < self.decay_fraction <= 1:
            raise ConfigError("train.min_lr_ratio must be in [0, 1] and train.decay_fraction in (0, 1]")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {list(self.betas)}")
        for name, allowed in (("dtype", DTYPES), ("schedule", SCHEDULES), ("device", ("auto", "cpu", "cuda"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"train.{name} '{getattr(self, name)}' is not one of {', '.join(allowed)}")
        if self.batch_size % self.micro_batch:
            raise ConfigError(f"train.batch_size {self.batch_size} is not a multiple of train.micro_batch "
                              f"{self.micro_batch}")

    def grad_accum(self, world: int) -> int:
        """Micro-steps per optimiser step on each of `world` ranks."""
        if self.batch_size % (self.micro_batch * world):
            raise ConfigError(f"train.batch_size {self.batch_size} does not split into {world} ranks × micro_batch "
                              f"{self.micro_batch}; make it a multiple of {self.micro_batch * world}")
        return self.batch_size // (self.micro_batch * world)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return TrainConfig().with_(**data)

    def with_(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed; ConfigError for unknown fields or wrong types."""
        return _replace(self, "train", changes)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs to know to build the model and train it."""

    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "model": self.model.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(ModelConfig.from_dict(data["model"]), TrainConfig.from_dict(data["train"]), data.get("preset"))


def _replace(obj: Any, section: str, changes: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(obj)}
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ConfigError(f"unknown {section} field(s): {', '.join(unknown)} (fields: {', '.join(known)})")
    for name, value in changes.items():
        _check_type(section, name, known[name].type, value)
    try:
        if section == "model":
            return obj.with_(**changes)
        return replace(obj, **changes)
    except TypeError as e:
        raise ConfigError(f"{section}: {e}") from None


_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_type(section: str, name: str, annotation: Any, value: Any) -> None:
    """ConfigError when a scalar field gets a value of the wrong type (e.g. lr = "fast")."""
    text = str(annotation).replace(" ", "")
    options = text.split("|")
    if value is None and "None" in options:
        return
    accepted = tuple(t for o in options for t in _SCALARS.get(o, ()))
    if not accepted:  # tuples, nested configs: checked by the dataclass itself
        return
    ok = isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted)
    if not ok:
        raise ConfigError(f"{section}.{name} must be {' or '.join(options)}, got {value!r}")


def read_config_file(path: Path) -> dict[str, Any]:
    """The {preset, model, train} dict of a JSON or TOML config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/object at the top")
    unknown = sorted(set(data) - {"preset", *SECTIONS})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (expected preset, model, train)")
    for section in SECTIONS:
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"{path}: [{section}] must be a table/object")
    return data


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """`--set section.field=value` items → {section: {field: value}}; a bare field goes where it exists."""
    model_fields = {f.name for f in fields(ModelConfig)}
    train_fields = {f.name for f in fields(TrainConfig)}
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected section.field=value")
        section, _, name = key.rpartition(".")
        if not section:
            section = "model" if name in model_fields else "train" if name in train_fields else ""
        if section not in SECTIONS:
            raise ConfigError(f"--set {item!r}: unknown field (use model.FIELD or train.FIELD)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[section][name] = value
    return out


def assemble(preset: RunConfig, file_data: dict[str, Any] | None = None,
             overrides: dict[str, dict[str, Any]] | None = None) -> RunConfig:
    """The preset, then the file's [model]/[train], then the overrides (flags and --set)."""
    model, train = preset.model, preset.train
    for layer in (file_data or {}, overrides or {}):
        if layer.get("model"):
            model = _replace(model, "model", dict(layer["model"]))
        if layer.get("train"):
            train = _replace(train, "train", dict(layer["train"]))
    if train.seq_len > model.max_seq_len:
        raise ConfigError(f"train.seq_len {train.seq_len} is longer than model.max_seq_len {model.max_seq_len}")
    return RunConfig(model, train, preset.preset)
