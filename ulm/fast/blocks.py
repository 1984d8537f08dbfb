"""The fast model of a GGUF whose linears are all in block quants µLM's native kernels run (Q4_K, Q5_K, Q6_K,
Q8_0, Q5_0: the Qwen2.5-Coder files), built from the blocks themselves: no float copy of any weight, in
memory or on disk.

- `runs_from_blocks(config, raw)`: whether a file takes this path: every linear (fused q/k/v, o, fused
  gate/up, down, the LM head) maps onto the "kquant" kind (`ulm.quant.FROM_BLOCKS`), the embedding has a
  row kernel, norms and biases are floats (`in_blocks`), and this machine runs the kernels (AVX-512 VNNI:
  the tile layout).
- `load_blocks(source)` builds the `FastTransformer` (None for a file that does not run from its blocks):
  * every linear a `KQuantLinear` (Qwen2's q/k/v bias added in the kernel, fp32), the tiles of all of them in
    one huge-page arena (`ulm.kquant.huge_pages_buffer`) in the order `layout` gives; the linears named in
    PRECISE quantise their activations to int16 (see there);
  * the LM head a KQuantLinear of the file's own head blocks (Q6_K, Q8_0) with fp32 logits: no refinement;
  * the embedding a `KQuantEmbedding` viewing the file's rows in place (a lookup maps in the pages of the
    rows it reads; nothing is copied), norms' weights fp32, rotary tables bf16; the lean path bound.
- The arena is read from the source's model cache entry (`TILES`, a header and the arena's bytes) when it is
  there; otherwise it is repacked from the mapped file (`ulm.progress` stage "repacking <name>"), a chunk
  of rows at a time, each chunk's file pages released once read (`ulm.kquant.release_pages`: the file never
  piles up in the resident set on top of the tiles), and saved — if the entry stays within DISK_BUDGET
  times the GGUF's size with it (the pieces are mapped, never joined, so the repacked copy is the one copy
  there is).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ulm import progress
from ulm.config import ModelConfig
from ulm.errors import ModelLoadError
from ulm.fast.runtime import ACT_DTYPE, FastTransformer
from ulm.kernels.native import library
from ulm.kquant import FORMATS, KQuantEmbedding, KQuantLinear, huge_pages_buffer, kernels_available
from ulm.kquant.linear import LAYOUT_VERSION, TILE, part_bytes
from ulm.kquant.memory import release_pages
from ulm.loading.cache import artefact, entry_size, save_artefact
from ulm.loading.gguf import GGUFTensor, open_gguf_blocks
from ulm.loading.gguf_file import GGUFFile
from ulm.loading.verified import joined_path
from ulm.quant import FUSED, block_kind
from ulm.registry import ModelSource

log = logging.getLogger("ulm")

BLOCKS_VERSION = 1  # of this module's arena order and precision policy: part of the cache file's name
TILES = f"fast-kquant-v{LAYOUT_VERSION}.{BLOCKS_VERSION}.tiles"
MAGIC = b"ULMTILES"
HEADER = 4096  # the arena's bytes start one page in
ALIGN = 64  # each linear's tiles start on a cache line
CHUNK_BYTES = 8 << 20  # GGUF rows repacked (and their pages released) at a time
DISK_BUDGET = 1.2  # the cache entry, tiles included, stays within this many times the GGUF's size
# Linears whose activations are quantised to int16 (`KQuantLinear.precise`). The inputs of w_gate_up (the
# RMSNorm of a residual stream with outlier channels) and of w_down lose most to int8 per 32: measured on
# Qwen2.5-Coder-1.5B (256 tokens of code, teacher forcing, top-1 agreement with the exact fp32 model),
# int8 everywhere 96.5%, int16 on w_gate_up 97.7%, on both 98.8%, everywhere 100%; decoding one row costs
# 0-8% more a linear (its weights' streaming hides the doubled dot products).
PRECISE = ("w_gate_up", "w_down")
FLOAT_TYPES = {"F32": "<f4", "F16": "<f2"}


@dataclass(frozen=True)
class Slot:
    """One linear of the arena: its module's name, the canonical tensors stacked along its outputs, each
    part's (GGML type, rows), its inputs, and where its tiles lie in the arena."""

    name: str
    tensors: tuple[str, ...]
    spec: tuple[tuple[str, int], ...]
    in_features: int
    offset: int
    nbytes: int


def _linear_tensors(config: ModelConfig, raw: dict[str, GGUFTensor]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(module name, canonical tensor names in row order) of every linear, in the arena's order."""
    for i in range(config.n_layers):
        for module, attr in (("attn", "wqkv"), ("attn", "wo"), ("mlp", "w_gate_up"), ("mlp", "w_down")):
            prefix = f"layers.{i}.{module}"
            yield f"{prefix}.{attr}", tuple(f"{prefix}.{p}.weight" for p in FUSED.get(attr, (attr,)))
    yield "lm_head", ("lm_head.weight",) if "lm_head.weight" in raw else ("embed.weight",)


def layout(config: ModelConfig, raw: dict[str, GGUFTensor]) -> list[Slot]:
    """Every linear's slot in the arena (KeyError for a tensor the file lacks)."""
    slots, at = [], 0
    for name, tensors in _linear_tensors(config, raw):
        parts = [raw[t] for t in tensors]
        k = int(parts[0].shape[-1])
        spec = tuple((p.ggml_type, int(p.shape[0])) for p in parts)
        nbytes = sum(part_bytes(t, n, k) for t, n in spec)
        slots.append(Slot(name, tensors, spec, k, at, nbytes))
        at += -(-nbytes // ALIGN) * ALIGN
    return slots


def runs_from_blocks(config: ModelConfig, raw: dict[str, GGUFTensor]) -> bool:
    """Whether this file's fast model runs from its blocks here (see the module docstring)."""
    return kernels_available() and in_blocks(config, raw)


def in_blocks(config: ModelConfig, raw: dict[str, GGUFTensor]) -> bool:
    """Whether the file is one whose fast model runs from its blocks where the kernels run (any machine)."""
    if config.norm != "rmsnorm" or config.mlp != "swiglu":
        return False
    try:
        slots = layout(config, raw)
    except (KeyError, ValueError):
        return False
    linears = all(block_kind("kquant", [raw[t] for t in s.tensors]) == "kquant" for s in slots)
    floats = all(t.ggml_type in FLOAT_TYPES for name, t in raw.items()
                 if name.endswith(".bias") or "norm." in name)
    return linears and floats and raw["embed.weight"].ggml_type in FORMATS


def _floats(t: GGUFTensor) -> Tensor:
    """A float tensor's values as fp32, copied out of the mapping."""
    return torch.from_numpy(np.ascontiguousarray(t.blocks).view(FLOAT_TYPES[t.ggml_type]).astype(np.float32)
                            .reshape(t.shape))


def _header(slots: list[Slot]) -> bytes:
    """The cache file's header: magic, version, the arena's size and a hash of its layout, padded to HEADER."""
    described = json.dumps([asdict(s) for s in slots], sort_keys=True).encode()
    total = slots[-1].offset + slots[-1].nbytes
    head = MAGIC + struct.pack("<IQ", BLOCKS_VERSION, total) + hashlib.sha256(described).digest()
    return head.ljust(HEADER, b"\0")


def _arena_size(slots: list[Slot]) -> int:
    return slots[-1].offset + slots[-1].nbytes


def _read_cached(source: ModelSource, slots: list[Slot], arena: Tensor) -> bool:
    """Fill `arena` from the cache entry's tiles; False (arena untouched or partly written) when they are
    missing, of another layout, or cut short."""
    path = artefact(source, TILES)
    if path is None:
        return False
    view = memoryview(arena.numpy())
    try:
        with path.open("rb", buffering=0) as f:
            if f.read(HEADER) != _header(slots):
                return False
            with progress.stage(f"loading {source.name}", total=len(view), unit="B") as step:
                done = 0
                while done < len(view):
                    n = f.readinto(view[done:done + (64 << 20)])
                    if not n:
                        return False
                    done += n
                    step.update(done)
    except OSError:
        return False
    return True


def _repack(source: ModelSource, gf: GGUFFile, raw: dict[str, GGUFTensor], slots: list[Slot], arena: Tensor) -> None:
    """Repack every slot's GGUF rows into the arena, a chunk at a time, releasing the file pages read."""
    lib = library()
    assert lib is not None
    lo, hi = gf.data.ctypes.data, gf.data.ctypes.data + gf.data.nbytes
    total = sum(raw[t].blocks.nbytes for s in slots for t in s.tensors)
    with progress.stage(f"repacking {source.name}", total=total, unit="B") as step:
        done = 0
        for slot in slots:
            at = arena.data_ptr() + slot.offset
            for tensor, (ggml_type, n) in zip(slot.tensors, slot.spec, strict=True):
                rows = raw[tensor].blocks  # uint8 [N, row bytes]
                if rows.strides[1] != 1:
                    rows = np.ascontiguousarray(rows)
                mapped = gf.file_backed and lo <= rows.ctypes.data and rows.ctypes.data + rows.nbytes <= hi
                tile = part_bytes(ggml_type, TILE, slot.in_features)
                step_rows = max(TILE, CHUNK_BYTES // rows.shape[1] // TILE * TILE)
                for r0 in range(0, n, step_rows):
                    chunk = rows[r0:r0 + step_rows]
                    rc = lib.ulm_kq_repack(FORMATS[ggml_type].ggml_id, chunk.ctypes.data, rows.strides[0],
                                           chunk.shape[0], slot.in_features, at + r0 // TILE * tile)
                    if rc != 0:
                        raise ModelLoadError(f"{source.name}: cannot repack {tensor} ({ggml_type})")
                    if mapped:
                        release_pages(chunk)
                    done += chunk.nbytes
                    step.update(done)
                at += part_bytes(ggml_type, n, slot.in_features)


def _save(source: ModelSource, slots: list[Slot], arena: Tensor) -> None:
    """Keep the arena in the cache entry when the entry stays within the disk budget with it."""
    nbytes = HEADER + arena.numel()
    size = source.size if source.parts and source.size else source.path.stat().st_size
    joined = joined_path(source) if source.parts and source.sha256 else None
    used = entry_size(source) + (joined.stat().st_size if joined is not None and joined.is_file() else 0)
    if used + nbytes > DISK_BUDGET * size:
        log.info("%s: the repacked weights are not cached (the cache entry would pass %.1f× the model file)",
                 source.name, DISK_BUDGET)
        return
    view = memoryview(arena.numpy())

    def write(where: Path) -> None:
        with where.open("wb") as f, progress.stage(f"caching {source.name}", total=len(view), unit="B") as step:
            f.write(_header(slots))
            for start in range(0, len(view), 64 << 20):
                f.write(view[start:start + (64 << 20)])
                step.update(start + len(view[start:start + (64 << 20)]))

    try:
        save_artefact(source, TILES, write)
    except OSError as exc:  # a full disk: the model runs all the same, and the next load repacks again
        log.warning("%s: the repacked weights could not be cached (%s)", source.name, exc)


def _linear(slot: Slot, arena: Tensor, raw: dict[str, GGUFTensor], config: ModelConfig) -> KQuantLinear:
    bias = None
    if slot.name.endswith("wqkv") and config.qkv_bias:
        bias = torch.cat([_floats(raw[t.removesuffix("weight") + "bias"]) for t in slot.tensors])
    out = torch.float32 if slot.name == "lm_head" else ACT_DTYPE
    precise = slot.name.rpartition(".")[2] in PRECISE
    data = arena[slot.offset:slot.offset + slot.nbytes]
    return KQuantLinear(slot.spec, slot.in_features, data, "tiles", bias, out, precise)


def load_blocks(source: ModelSource, use_cache: bool = True) -> FastTransformer | None:
    """The fast model of a GGUF `source`, None when it does not `runs_from_blocks`; see the module docstring.
    `use_cache=False` repacks without reading or writing the cache entry's tiles."""
    gf, config, raw = open_gguf_blocks(source)
    if not runs_from_blocks(config, raw):
        return None
    slots = layout(config, raw)
    arena = huge_pages_buffer(_arena_size(slots))
    if not (use_cache and _read_cached(source, slots, arena)):
        _repack(source, gf, raw, slots, arena)
        if use_cache:
            _save(source, slots, arena)
    with torch.device("meta"):
        module = FastTransformer(config)
    module.embed = KQuantEmbedding.from_blocks(raw["embed.weight"], copy=False)
    for slot in slots:
        parent, _, attr = slot.name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, attr, _linear(slot, arena, raw, config))
    for name, t in raw.items():
        if "norm." in name:
            owner, _, attr = name.rpartition(".")
            setattr(module.get_submodule(owner), attr, nn.Parameter(_floats(t), requires_grad=False))
    module.rope.rebuild(ACT_DTYPE, torch.device("cpu"))
    module.requires_grad_(False)
    if gf.file_backed:  # what the load read of the file (metadata, norms): the embedding maps its rows on use
        release_pages(gf.data)
    return module.eval().bind()
