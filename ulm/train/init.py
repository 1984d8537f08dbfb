"""A trainable Transformer: freshly initialised from a seed, or holding the weights of a model to start from.

- `init_weights(model, std, seed)`: matrices and the embedding ~ N(0, std²), the residual projections
  (attn.wo, mlp.w_down) ~ N(0, (std / sqrt(2·n_layers))²) as GPT-2 does, norm weights 1, biases 0. The numbers
  come from one CPU generator in parameter order, so a seed gives the same model on any device.
- `new_model(config, device, std, seed)`: built on the meta device, materialised on `device`, initialised.
- `load_init(ref, device)`: any model `ulm.load` accepts (a µLM checkpoint, an HF directory, a GGUF file) as
  (its config, a trainable Transformer holding its weights in fp32): `ulm train --init`; `init_config(ref)`
  reads only its config.

Unlike `ulm.model.build_model` (inference: eval mode, frozen), these models train: parameters require grad.
"""

from __future__ import annotations

import math

import torch

from ulm.config import ModelConfig
from ulm.model import Transformer

RESIDUAL_PROJECTIONS = ("attn.wo.weight", "mlp.w_down.weight")


@torch.no_grad()
def init_weights(model: Transformer, std: float, seed: int) -> None:
    """Initialise every parameter in place (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    residual_std = std / math.sqrt(2 * model.config.n_layers)
    for name, p in model.named_parameters():
        if p.dim() == 1:
            p.fill_(1.0 if name.endswith("norm.weight") else 0.0)
            continue
        s = residual_std if name.endswith(RESIDUAL_PROJECTIONS) else std
        p.copy_(torch.empty(p.shape).normal_(0.0, s, generator=gen))


def _materialise(config: ModelConfig, device: torch.device | str) -> Transformer:
    with torch.device("meta"):
        model = Transformer(config)
    model.to_empty(device=device)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    model.rope.rebuild(torch.float32, device)
    return model


def new_model(config: ModelConfig, device: torch.device | str, std: float = 0.02, seed: int = 0) -> Transformer:
    """A freshly initialised trainable model on `device`."""
    model = _materialise(config, device)
    init_weights(model, std, seed)
    return model.train()


def model_from_state(config: ModelConfig, state: dict[str, torch.Tensor], device: torch.device | str) -> Transformer:
    """A trainable model holding `state` (canonical or fused names), fp32, on `device`."""
    from ulm.model import check_state_dict

    check_state_dict(config, state)
    model = _materialise(config, device)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return model.train()


def load_init(ref: str, device: torch.device | str) -> tuple[ModelConfig, Transformer]:
    """(config, trainable fp32 model) of any model reference `ulm.load` takes."""
    from ulm.loading import load_checkpoint
    from ulm.registry import resolve

    config, state = load_checkpoint(resolve(ref), torch.float32)
    return config, model_from_state(config, state, device)


def init_config(ref: str) -> ModelConfig:
    """The config of a model reference, without reading its weights."""
    from ulm.registry import resolve

    source = resolve(ref)
    if source.kind == "gguf":
        from ulm.loading.gguf import config_from_gguf, open_gguf

        return config_from_gguf(open_gguf(source.path), source.path)
    from ulm.loading.hf import config_from_hf

    return config_from_hf(source.path)
