"""The model's shape: one dataclass, a few named presets, and the dict form a checkpoint carries.

- `ModelConfig` derives `n_kv_heads` (defaults to `n_heads`: plain MHA) and `head_dim` (`dim // n_heads`)
  in `__post_init__`, and checks that the shape is one the model can build.
- `RopeScaling` says how rotary positions are stretched for long context: none, linear interpolation,
  NTK-aware base scaling, YaRN, or Llama 3's frequency-banded scaling (or explicit per-frequency
  divisors, the form llama.cpp's GGUF files store it in).
- `to_dict()` / `ModelConfig.from_dict()` are the JSON form stored next to the weights; new fields get
  their defaults in `_upgrade`, the one place old checkpoints are patched.

Stdlib only: `ulm info` and the registry can read a config without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

ARCHES = ("llama", "mistral", "qwen2")
ROPE_KINDS = ("none", "linear", "ntk", "yarn", "llama3")
NORMS = ("rmsnorm", "layernorm")
MLPS = ("swiglu", "gelu")


class ConfigError(ValueError):
    """A config that names no buildable model; the message says which field is wrong."""


@dataclass(frozen=True)
class RopeScaling:
    """How rotary positions are scaled beyond the length the model was trained on."""

    kind: str = "none"  # one of ROPE_KINDS
    factor: float = 1.0  # context extension factor (new length / original length)
    original_max_seq_len: int | None = None  # training context, needed by yarn and llama3
    beta_fast: float = 32.0  # yarn: rotations above which dims are left unscaled
    beta_slow: float = 1.0  # yarn: rotations below which dims are fully interpolated
    attn_factor: float | None = None  # yarn: attention temperature; None = 0.1·ln(factor) + 1
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    truncate: bool = True  # yarn: round the correction range to whole dims (HF's default)
    # Per-pair divisors of the inverse frequencies, as llama.cpp stores Llama 3.1's scaling (GGUF rope_freqs);
    # applied after `kind`'s own scaling. None = no divisors.
    freq_factors: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.freq_factors is not None:
            object.__setattr__(self, "freq_factors", tuple(float(f) for f in self.freq_factors))
            if not all(f > 0 for f in self.freq_factors):
                raise ConfigError("rope freq_factors must all be > 0")
        if self.kind not in ROPE_KINDS:
            raise ConfigError(f"rope scaling '{self.kind}' is not supported (supported: {', '.join(ROPE_KINDS)})")
        if self.factor <= 0:
            raise ConfigError(f"rope scaling factor must be > 0, got {self.factor}")
        if self.kind in ("yarn", "llama3") and not self.original_max_seq_len:
            raise ConfigError(f"rope scaling '{self.kind}' needs original_max_seq_len")


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer of the Llama family."""

    vocab_size: int
    dim: int  # residual stream width (HF: hidden_size)
    n_layers: int
    n_heads: int  # query heads
    hidden_dim: int  # MLP inner width (HF: intermediate_size)
    n_kv_heads: int | None = None  # key/value heads: = n_heads (MHA), 1 (MQA), or a divisor (GQA)
    head_dim: int | None = None  # None = dim // n_heads
    arch: str = "llama"  # one of ARCHES; informational once the fields below are set
    max_seq_len: int = 2048  # context length the model supports (with its rope scaling)
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    norm: str = "rmsnorm"  # one of NORMS
    norm_eps: float = 1e-5
    mlp: str = "swiglu"  # one of MLPS
    qkv_bias: bool = False  # Qwen2 has biases on q, k and v
    tie_embeddings: bool = False  # LM head shares the token embedding
    sliding_window: int | None = None  # Mistral; None = full attention
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.head_dim is None:
            if self.dim % self.n_heads:
                raise ConfigError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))
        object.__setattr__(self, "eos_token_ids", tuple(self.eos_token_ids))
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "hidden_dim", "n_kv_heads", "head_dim",
                     "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        factors = self.rope_scaling.freq_factors
        if factors is not None and len(factors) != self.head_dim // 2:
            raise ConfigError(f"rope freq_factors has {len(factors)} entries, head_dim {self.head_dim} needs "
                              f"{self.head_dim // 2}")
        for name, allowed in (("arch", ARCHES), ("norm", NORMS), ("mlp", MLPS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} '{getattr(self, name)}' is not supported (supported: {', '.join(allowed)})")

    @property
    def n_rep(self) -> int:
        """Query heads per KV head (1 = MHA)."""
        return self.n_heads // self.n_kv_heads

    def n_params(self) -> int:
        """Parameter count (tied embeddings counted once)."""
        attn = self.dim * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        if self.qkv_bias:
            attn += self.head_dim * (self.n_heads + 2 * self.n_kv_heads)
        mlp = (3 if self.mlp == "swiglu" else 2) * self.dim * self.hidden_dim
        norms = 2 * self.dim * (2 if self.norm == "layernorm" else 1)
        embed = self.vocab_size * self.dim * (1 if self.tie_embeddings else 2)
        return self.n_layers * (attn + mlp + norms) + embed + self.dim

    def kv_cache_bytes(self, batch: int, seq_len: int, bytes_per_elem: int = 2) -> int:
        """Memory of a KV cache for `batch` rows of `seq_len` tokens."""
        return 2 * self.n_layers * batch * self.n_kv_heads * seq_len * self.head_dim * bytes_per_elem

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with a checkpoint."""
        data = asdict(self)
        data["eos_token_ids"] = list(self.eos_token_ids)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict()` output, upgrading dicts written by older versions."""
        data = _upgrade(dict(data))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**data)

    def with_(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (derived fields recomputed unless given)."""
        if "dim" in changes or "n_heads" in changes:
            changes.setdefault("head_dim", None)
        return replace(self, **changes)


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Patch config dicts from older checkpoints: the single place new fields get their defaults."""
    if isinstance(data.get("rope_scaling"), dict):
        data["rope_scaling"] = RopeScaling(**data["rope_scaling"])
    elif data.get("rope_scaling") is None:
        data.pop("rope_scaling", None)
    return data


PRESETS: dict[str, ModelConfig] = {
    # Random-weight models for tests: the real SmolLM2 vocabulary, so the real tokenizer works with them.
    "tiny": ModelConfig(vocab_size=49152, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=128,
                        max_seq_len=512, rope_theta=100000.0, norm_eps=1e-5, tie_embeddings=True),
    "smollm2-135m": ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, hidden_dim=1536,
                                max_seq_len=8192, rope_theta=100000.0, norm_eps=1e-5, tie_embeddings=True,
                                bos_token_id=1, eos_token_ids=(2,)),
    "smollm2-360m": ModelConfig(vocab_size=49152, dim=960, n_layers=32, n_heads=15, n_kv_heads=5, hidden_dim=2560,
                                max_seq_len=8192, rope_theta=100000.0, norm_eps=1e-5, tie_embeddings=True,
                                bos_token_id=1, eos_token_ids=(2,)),
    # Qwen2.5-Coder-1.5B-Instruct's shape (the GPU benchmark's random-weight model)
    "qwen2.5-coder-1.5b": ModelConfig(vocab_size=151936, dim=1536, n_layers=28, n_heads=12, n_kv_heads=2,
                                      hidden_dim=8960, arch="qwen2", max_seq_len=32768, rope_theta=1000000.0,
                                      norm_eps=1e-6, qkv_bias=True, tie_embeddings=True,
                                      eos_token_ids=(151645, 151643)),
}


def preset(name: str) -> ModelConfig:
    """A named preset; ConfigError listing the names when unknown."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset '{name}' (presets: {', '.join(PRESETS)})") from None
