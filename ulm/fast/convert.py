"""The fast mode's weights: a float `Transformer` (and its GGUF blocks) → the fast model's tensors → a
`FastTransformer`, kept in the model cache in between.

- `convert(module, raw, scheme)`: every linear (fused q/k/v, output, fused gate/up, down, and the LM head,
  tied or not) becomes the quantised linear `ulm.quant`'s tables pick (`LINEAR_KINDS`, `FROM_BLOCKS`): GGUF
  Q4_0/Q4_1 blocks packed losslessly into int4, other weights quantised from their fp32 values (int8 where
  the int4 kernel does not take the shape, or with scheme="int8"); the LM head with fp32 logits. The
  embedding (and an untied head's table) in bf16, the norms' weights in fp32.
- `install(module, tensors)`: swaps the module's embedding, norms and linears for the fast ones (int4
  linears repacked for µLM's native kernel where the CPU has AVX-512 VNNI), wraps the head in `RefinedHead`,
  rebuilds the rotary tables in bf16 and binds the lean path (`ulm.fast.runtime`).
- `fast_tensors` keeps a GGUF source's converted tensors in its model cache entry as
  `fast-<scheme>-v<FAST_VERSION>.safetensors` (`ulm.loading.cache`; a damaged file is converted again), so
  only the first fast load of a file converts, and `load_fast` then builds the model on the meta device from
  them: no float model in memory. Without a source (or for HF directories) the weights are converted at
  every load, from the module's float weights (lossless for Q4_1 sources too: min/max over a dequantised
  Q4_1 group lands on its grid).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ulm.fast.blocks import TILES, load_blocks
from ulm.fast.modules import RefinedHead, WideningEmbedding
from ulm.fast.runtime import ACT_DTYPE, FastTransformer
from ulm.loading.cache import artefact, cached_config, load_tensors, save_tensors
from ulm.loading.checkpoint import load_checkpoint
from ulm.loading.gguf import read_gguf_blocks
from ulm.model import Transformer, build_model
from ulm.quant import BlockTensor, Int4Linear, Int8Linear, linear_from_state, quantized_linear, raw_parts
from ulm.registry import ModelSource

FAST_VERSION = 1


def _artefact(scheme: str) -> str:
    return f"fast-{scheme}-v{FAST_VERSION}.safetensors"


def _linear_names(module: Transformer) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear | Int4Linear | Int8Linear)]


def _norm_params(module: Transformer) -> dict[str, Tensor]:
    """Every parameter that is not in a linear or the embedding: the norms' weights (and biases)."""
    linears = tuple(f"{n}." for n in _linear_names(module))
    return {k: v for k, v in module.state_dict().items() if not k.startswith(linears) and not k.startswith("embed.")}


def convert(module: Transformer, raw: Mapping[str, BlockTensor], scheme: str) -> dict[str, Tensor]:
    """The fast model's tensors from an fp32 `module` and, where it was read from a GGUF file, its blocks
    (`raw`, by canonical name; empty otherwise)."""
    tensors = {k: v.float() for k, v in _norm_params(module).items()}
    tensors["embed.weight"] = module.embed.weight.detach().to(ACT_DTYPE)
    if not module.config.tie_embeddings:
        tensors["lm_head.table"] = module.lm_head.weight.detach().to(ACT_DTYPE)  # for RefinedHead
    for name in _linear_names(module):
        linear = module.get_submodule(name)
        out = torch.float32 if name == "lm_head" else None
        quantised = quantized_linear(linear.weight, linear.bias, scheme, raw_parts(name, raw), ACT_DTYPE, out)
        tensors.update({f"{name}.{key}": value for key, value in quantised.state_dict().items()})
    return {k: v.contiguous() for k, v in tensors.items()}


def install(module: Transformer, tensors: Mapping[str, Tensor]) -> FastTransformer:
    """Swap `module`'s embedding, norms' weights and linears for the fast ones held in `tensors`."""
    owned: defaultdict[str, dict[str, Tensor]] = defaultdict(dict)  # module name → its own tensors
    for key, value in tensors.items():
        owner, _, attr = key.rpartition(".")
        owned[owner][attr] = value
    module.embed = WideningEmbedding(tensors["embed.weight"])
    for name in _linear_names(module):
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        out = torch.float32 if name == "lm_head" else ACT_DTYPE
        setattr(parent, attr, linear_from_state(owned[name], ACT_DTYPE, out))
    for key in _norm_params(module):
        owner_name, _, attr = key.rpartition(".")
        setattr(module.get_submodule(owner_name), attr, nn.Parameter(tensors[key], requires_grad=False))
    for linear in module.modules():
        if isinstance(linear, Int4Linear):
            linear.use_native_kernel()
    table = module.embed.weight if module.config.tie_embeddings else tensors["lm_head.table"]
    module.lm_head = RefinedHead(module.lm_head, table)
    module.rope.rebuild(ACT_DTYPE, tensors["embed.weight"].device)
    module.requires_grad_(False)
    return _adopt(module).eval().bind()


def _adopt(module: Transformer) -> FastTransformer:
    """A FastTransformer holding `module`'s submodules (no weights copied)."""
    if isinstance(module, FastTransformer):
        return module
    with torch.device("meta"):
        fast = FastTransformer(module.config)
    for name, child in module.named_children():
        setattr(fast, name, child)
    return fast


def fast_tensors(module: Transformer, source: ModelSource | None = None, scheme: str = "int4") -> dict[str, Tensor]:
    """The fast model's tensors of fp32 `module`, built from `source` (mapped from the cache when there), else
    converted (and cached, for a GGUF source)."""
    gguf = source if source is not None and source.kind == "gguf" else None
    if gguf is not None and (cached := load_tensors(gguf, _artefact(scheme))) is not None:
        return cached
    tensors = convert(module, read_gguf_blocks(gguf)[1] if gguf is not None else {}, scheme)
    if gguf is not None:
        save_tensors(gguf, _artefact(scheme), tensors)
    return tensors


def make_fast(module: Transformer, source: ModelSource | None = None, dtype: torch.dtype = ACT_DTYPE,
              scheme: str = "int4") -> FastTransformer:
    """The fast model of a built fp32 `module`: its submodules are converted in place and adopted by the
    returned FastTransformer, so use the return value. `source` (the checkpoint the module was built from)
    makes the conversion lossless for 4-bit GGUF tensors and lets it be cached. Only bf16 activations are
    supported on CPU: other `dtype`s raise ValueError."""
    if dtype != ACT_DTYPE:
        raise ValueError(f"the fast mode runs bf16 activations, not {dtype}")
    return install(module, fast_tensors(module, source, scheme))


def load_fast(source: ModelSource, device: torch.device | str = "cpu", scheme: str | None = None) -> FastTransformer:
    """The fast model of `source`. With scheme None (or "kquant"), a GGUF whose linears all run from their
    blocks (`ulm.fast.blocks`) is built from them; any other is built as under "int4". Under "int4" or "int8"
    it is built from the cache on the meta device (no float model in memory) when the cache holds it;
    otherwise the float model is built once, converted and cached."""
    config = cached_config(source) if source.kind == "gguf" else None
    if scheme in (None, "kquant") and source.kind == "gguf" and torch.device(device).type == "cpu":
        # a file whose int4 tensors are cached (and no tiles) went the int4 way before: not opened again
        int4_cached = scheme is None and config is not None and artefact(source, _artefact("int4")) is not None
        if not int4_cached or artefact(source, TILES) is not None:
            model = load_blocks(source)
            if model is not None:
                return model
    scheme = "int4" if scheme in (None, "kquant") else scheme
    tensors = None if config is None else load_tensors(source, _artefact(scheme))
    if config is None or tensors is None:
        config, state = load_checkpoint(source, torch.float32)
        return make_fast(build_model(config, state, torch.float32, device), source, scheme=scheme)
    with torch.device("meta"):
        module = FastTransformer(config)
    return install(module, {k: v.to(device) for k, v in tensors.items()})
