"""The model's components, one module each: norms, rotary embedding, attention, MLPs, the decoder block."""

from ulm.layers.attention import Attention, AttnPlan
from ulm.layers.block import Block
from ulm.layers.mlp import GeluMLP, SwiGLU, build_mlp
from ulm.layers.norm import LayerNorm, RMSNorm, build_norm
from ulm.layers.rope import RotaryEmbedding, apply_rope, inv_freq_and_scale

__all__ = ["Attention", "AttnPlan", "Block", "GeluMLP", "LayerNorm", "RMSNorm", "RotaryEmbedding", "SwiGLU",
           "apply_rope", "build_mlp", "build_norm", "inv_freq_and_scale"]
