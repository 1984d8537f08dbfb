"""The Transformer: token embedding → decoder blocks → final norm → LM head (tied to the embedding or not).

- Weights use the canonical state-dict names of ulm/__init__.py; `canonical_shapes(config)` lists them,
  `check_state_dict` names what is missing, unexpected or mis-shaped in one line, and `build_model`
  turns (config, state dict) into a ready model without copying weights already in the target dtype.
- `forward(ids)` without a cache is the plain causal reference path. With a KV cache, each row's tokens
  sit at its own start position; the plan for where K/V go and what is attended is built once per
  forward (`_plan`) and shared by every layer:
  * all rows at one start and cache rows contiguous (batch-1 decode, prefill): slices of the cache
    (views); no mask tensor when one token is decoded or a fresh prompt is prefilled from position 0;
  * rows at different starts (the server's batch): indexed writes and gathered keys under a per-row mask;
  * a one-token step carries each row's key span instead of a mask (`AttnPlan.spans`), for the native
    decode attention.
- `last_only=True` applies the final norm and LM head to the last position only; `hidden_states(ids)` stops
  before the LM head (what embeddings pool).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ulm.config import ModelConfig
from ulm.errors import ContextLengthError, ModelLoadError
from ulm.kv_cache import KVCache
from ulm.layers.attention import AttnPlan
from ulm.layers.block import Block
from ulm.layers.norm import build_norm
from ulm.layers.rope import RotaryEmbedding
from ulm.positions import first_key, row_starts


class Transformer(nn.Module):
    """A decoder-only Llama-family language model."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        assert config.head_dim is not None
        self.config = config
        # Given weights skip nn.Embedding's own init, whose normal_ takes seconds on the meta device.
        self.embed = nn.Embedding(config.vocab_size, config.dim, _weight=torch.empty(config.vocab_size, config.dim))
        if not self.embed.weight.is_meta:
            nn.init.normal_(self.embed.weight)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = build_norm(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.rope = RotaryEmbedding(config.head_dim, config.max_seq_len, config.rope_theta, config.rope_scaling)
        self._register_load_state_dict_pre_hook(self._fill_tied_head)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the activations between the blocks' matmuls and of the KV cache: the embedding's."""
        return self.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def _fill_tied_head(self, state_dict: dict[str, torch.Tensor], prefix: str, *args: object) -> None:
        if self.config.tie_embeddings:
            state_dict[f"{prefix}lm_head.weight"] = state_dict[f"{prefix}embed.weight"]

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None, start: torch.Tensor | int | None = None,
                rows: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits [B, T, V] (or [B, 1, V] with last_only) for ids [B, T]; see ulm/__init__.py for the contract."""
        return self.forward_plan(ids, self._plan(ids, cache, start, rows), last_only)

    def forward_plan(self, ids: torch.Tensor, plan: AttnPlan, last_only: bool = False) -> torch.Tensor:
        """`forward` under a plan built elsewhere (`ulm.cuda.graphs.decode_plan`: from device tensors only)."""
        x = self._blocks(ids, plan)  # [B, T, D]
        if last_only:
            x = x[:, -1:]  # [B, 1, D]
        return self.lm_head(self.norm(x))  # [B, T or 1, V]

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """The final norm's output [B, T, D] for ids [B, T] (HF's `last_hidden_state`), without a KV cache."""
        return self.norm(self._blocks(ids, self._plan(ids, None, None, None)))

    def _blocks(self, ids: torch.Tensor, plan: AttnPlan) -> torch.Tensor:
        x = self.embed(ids)  # [B, T, D]
        for layer in self.layers:
            x = layer(x, plan)
        return x

    def _plan(self, ids: torch.Tensor, cache: KVCache | None, start: torch.Tensor | int | None,
              rows: torch.Tensor | None) -> AttnPlan:
        B, T = ids.shape
        window = self.config.sliding_window
        if cache is None:
            if self.rope.max_len < T:
                raise ContextLengthError(T, self.rope.max_len)
            cos, sin = self.rope.cos[:T, None], self.rope.sin[:T, None]  # [T, 1, hd] views
            if window is None or window >= T:
                return AttnPlan(cos, sin, causal=True)
            pos = torch.arange(T, device=ids.device)
            return AttnPlan(cos, sin, mask=_allowed(pos, pos, window))
        row_list, starts = row_starts(B, cache, start, rows, T, self.rope.max_len)
        end = max(starts) + T
        contiguous = row_list == list(range(row_list[0], row_list[0] + B))
        if contiguous and all(s == starts[0] for s in starts):
            return self._slice_plan(cache, starts[0], T, slice(row_list[0], row_list[0] + B), window, ids.device)
        pos = torch.tensor(starts, device=ids.device)[:, None] + torch.arange(T, device=ids.device)  # [B, T]
        keys = torch.arange(end, device=ids.device)
        mask = None if T == 1 else _allowed(pos[:, None, :], keys, window)  # [B, 1, T, S]; spans at T == 1
        row_index = torch.tensor(row_list, device=ids.device)  # [B]
        # Rows at different positions: written by index; read back as a view when they are contiguous
        # (the server's usual case), gathered (a copy of every row's keys) only when they are scattered.
        rows = slice(row_list[0], row_list[0] + B) if contiguous else row_index
        spans = None if T != 1 else torch.tensor([[first_key(s, window), s + 1] for s in starts])  # [B, 2]
        return AttnPlan(self.rope.cos[pos, None], self.rope.sin[pos, None], mask=mask, cache=cache,  # [B, T, 1, hd]
                        rows=rows, row_index=row_index[:, None], pos=pos, keys=slice(0, end), spans=spans)

    def _slice_plan(self, cache: KVCache, s: int, T: int, rows: slice, window: int | None,
                    device: torch.device) -> AttnPlan:
        lo = first_key(s, window)  # the first key the first query may see
        cos, sin = self.rope.cos[s:s + T, None], self.rope.sin[s:s + T, None]  # [T, 1, hd] views
        plan = AttnPlan(cos, sin, cache=cache, rows=rows, pos=slice(s, s + T), keys=slice(lo, s + T))
        if T == 1:
            plan.spans = torch.tensor([[0, s + 1 - lo]] * (rows.stop - rows.start))  # [B, 2]
        elif T > 1 and s == 0 and (window is None or window >= T):
            plan.causal = True  # a fresh prefill: queries and keys both 0..T-1, SDPA's own causal mask
        elif T > 1:  # queries at s..s+T-1 see keys lo..their own position (and no further back than the window)
            plan.mask = _allowed(torch.arange(s, s + T, device=device), torch.arange(lo, s + T, device=device), window)
        return plan


def _allowed(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """Bool mask [..., Tq, Tk]: key position ≤ query position (and within the sliding window)."""
    diff = q_pos[..., :, None] - k_pos  # [..., Tq, Tk]
    ok = diff >= 0
    if window is not None:
        ok &= diff < window
    return ok


def canonical_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every canonical state-dict name this config's model takes, with its shape."""
    assert config.head_dim is not None and config.n_kv_heads is not None
    D, hd, V = config.dim, config.head_dim, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (V, D), "norm.weight": (D,)}
    norms = ["norm"] + [f"layers.{i}.{n}" for i in range(config.n_layers) for n in ("attn_norm", "mlp_norm")]
    for i in range(config.n_layers):
        p = f"layers.{i}."
        for name, rows in (("wq", config.n_heads * hd), ("wk", config.n_kv_heads * hd), ("wv", config.n_kv_heads * hd)):
            shapes[f"{p}attn.{name}.weight"] = (rows, D)
            if config.qkv_bias:
                shapes[f"{p}attn.{name}.bias"] = (rows,)
        shapes[f"{p}attn.wo.weight"] = (D, config.n_heads * hd)
        shapes[f"{p}attn_norm.weight"] = shapes[f"{p}mlp_norm.weight"] = (D,)
        if config.mlp == "swiglu":
            shapes[f"{p}mlp.w_gate.weight"] = (config.hidden_dim, D)
        shapes[f"{p}mlp.w_up.weight"] = (config.hidden_dim, D)
        shapes[f"{p}mlp.w_down.weight"] = (D, config.hidden_dim)
    if config.norm == "layernorm":
        shapes.update({f"{n}.bias": (D,) for n in norms})
    if not config.tie_embeddings:
        shapes["lm_head.weight"] = (V, D)
    return shapes


_GROUPS = (("attn.wqkv", ("attn.wq", "attn.wk", "attn.wv")), ("mlp.w_gate_up", ("mlp.w_gate", "mlp.w_up")))


def _fusable(config: ModelConfig, names: Mapping[str, object]) -> list[tuple[str, list[str]]]:
    """(fused name, canonical names stacked into it) for every group present in `names`."""
    groups = []
    for i in range(config.n_layers):
        for fused, parts in _GROUPS:
            for kind in ("weight", "bias"):
                members = [f"layers.{i}.{p}.{kind}" for p in parts]
                if all(m in names for m in members):
                    groups.append((f"layers.{i}.{fused}.{kind}", members))
    return groups


def fused_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the fused layout (`fuse_state_dict`): q/k/v and gate/up stacked by rows."""
    shapes = canonical_shapes(config)
    for fused, members in _fusable(config, shapes):
        parts = [shapes.pop(m) for m in members]
        shapes[fused] = (sum(p[0] for p in parts), *parts[0][1:])
    return shapes


def fuse_state_dict(config: ModelConfig, state_dict: Mapping[str, torch.Tensor],
                    dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Canonical names → the model's fused layout (attn.wqkv, mlp.w_gate_up), floats cast to `dtype` if given.

    Storing this layout (the model cache does) lets `build_model` use mmap'd weights without any copy.
    """
    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    out = dict(state_dict)
    for fused, members in _fusable(config, state_dict):
        out[fused] = torch.cat([cast(out.pop(m)) for m in members])  # [sum of rows, ...]
    if config.tie_embeddings:
        out.pop("lm_head.weight", None)
    return {k: cast(v) for k, v in out.items()}


def check_state_dict(config: ModelConfig, state_dict: Mapping[str, torch.Tensor], where: object = None) -> None:
    """ModelLoadError naming the missing, unexpected or mis-shaped tensors, if any (either layout);
    `where` (e.g. the checkpoint's path) starts the message."""
    fused = any(".wqkv." in n or ".w_gate_up." in n for n in state_dict)
    expected = fused_shapes(config) if fused else canonical_shapes(config)
    if config.tie_embeddings:
        state_dict = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}  # a copy of embed is fine
    problems = []
    missing = [n for n in expected if n not in state_dict]
    if missing:
        problems.append(f"missing tensors {_few(missing)}")
    unexpected = [n for n in state_dict if n not in expected]
    if unexpected:
        problems.append(f"unexpected tensors {_few(unexpected)}")
    wrong = [f"{n} {tuple(state_dict[n].shape)} (config says {shape})" for n, shape in expected.items()
             if n in state_dict and tuple(state_dict[n].shape) != shape]
    if wrong:
        problems.append(f"shape mismatch: {_few(wrong)}")
    if problems:
        prefix = f"{where}: " if where is not None else ""
        raise ModelLoadError(f"{prefix}weights do not fit the config: " + "; ".join(problems))


def _few(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def build_model(config: ModelConfig, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> Transformer:
    """A Transformer in eval mode holding `state_dict`'s weights (canonical names), cast to dtype on device.

    Weights already in `dtype` on `device` are used as they are (no copy), so an mmap'd state dict stays mapped.
    """
    check_state_dict(config, state_dict)
    with torch.device("meta"):
        model = Transformer(config)
    weights = {k: v.to(dtype=dtype, device=device) for k, v in state_dict.items()}
    model.load_state_dict(weights, strict=True, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    model.rope.rebuild(dtype, device)
    model.requires_grad_(False)
    return model.eval()


def to_canonical(model: Transformer) -> dict[str, torch.Tensor]:
    """The model's weights under the canonical names (q/k/v and gate/up split back; no tied head)."""
    config = model.config
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("attn.wqkv.weight") or name.endswith("attn.wqkv.bias"):
            prefix, kind = name.rsplit(".wqkv.", 1)
            assert config.head_dim is not None and config.n_kv_heads is not None
            q, k, v = tensor.split([config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim,
                                    config.n_kv_heads * config.head_dim])
            out.update({f"{prefix}.wq.{kind}": q, f"{prefix}.wk.{kind}": k, f"{prefix}.wv.{kind}": v})
        elif name.endswith("mlp.w_gate_up.weight"):
            gate, up = tensor.split(config.hidden_dim)
            prefix = name.removesuffix(".w_gate_up.weight")
            out.update({f"{prefix}.w_gate.weight": gate, f"{prefix}.w_up.weight": up})
        elif not (name == "lm_head.weight" and config.tie_embeddings):
            out[name] = tensor
    return out
