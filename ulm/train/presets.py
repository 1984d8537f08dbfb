"""Named training presets: a model shape and the training defaults that suit it.

| preset        | shape                                       | params | meant for                              |
|---------------|---------------------------------------------|--------|----------------------------------------|
| tiny          | 2 layers, dim 64, 4/2 heads (ulm/config.py)  | 3.2 M  | tests and CPU smoke runs (seconds)     |
| small         | 6 layers, dim 256, 8/4 heads                 | 17 M   | CPU runs that learn something (minutes)|
| smollm2-135m  | SmolLM2-135M: 30 layers, dim 576, 9/3 heads  | 135 M  | one GPU; bf16, sequence 1024           |
| smollm2-360m  | SmolLM2-360M: 32 layers, dim 960, 15/5 heads | 362 M  | one or more GPUs                       |

All use SmolLM2's vocabulary size (49152) and tied embeddings; a dataset with a larger vocabulary widens the
model's vocabulary to fit (see trainer.py). `preset(name)` returns a RunConfig.
"""

from __future__ import annotations

from ulm.config import PRESETS, ConfigError, ModelConfig
from ulm.train.config import RunConfig, TrainConfig

TRAIN_PRESETS: dict[str, RunConfig] = {
    "tiny": RunConfig(PRESETS["tiny"], TrainConfig(
        steps=300, seq_len=128, batch_size=16, micro_batch=8, lr=3e-3, warmup_steps=20, eval_every=50,
        eval_sequences=16, save_every=100), "tiny"),
    "small": RunConfig(ModelConfig(vocab_size=49152, dim=256, n_layers=6, n_heads=8, n_kv_heads=4, hidden_dim=768,
                                   max_seq_len=2048, rope_theta=100000.0, tie_embeddings=True), TrainConfig(
        steps=2000, seq_len=256, batch_size=32, micro_batch=8, lr=2e-3, warmup_steps=100, eval_every=200,
        save_every=500), "small"),
    "smollm2-135m": RunConfig(PRESETS["smollm2-135m"], TrainConfig(
        steps=5000, seq_len=1024, batch_size=64, micro_batch=16, lr=3e-3, warmup_steps=200, schedule="wsd",
        eval_every=250, eval_sequences=64, save_every=1000), "smollm2-135m"),
    "smollm2-360m": RunConfig(PRESETS["smollm2-360m"], TrainConfig(
        steps=5000, seq_len=1024, batch_size=64, micro_batch=8, lr=2e-3, warmup_steps=200, schedule="wsd",
        eval_every=250, eval_sequences=64, save_every=1000), "smollm2-360m"),
}


def preset(name: str) -> RunConfig:
    """A named training preset; ConfigError listing the names when unknown."""
    try:
        return TRAIN_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset '{name}' (presets: {', '.join(TRAIN_PRESETS)})") from None
