"""Decode steps as CUDA graphs: one kernel launch per step instead of a dozen per layer.

A decode step feeds one token to each of B cache rows. `decode_step(net, cache, inputs, keys)` is that step
in plain torch over device tensors only (no host value is read, so it can be captured): `inputs` is one
long tensor [3, B] of (token id, cache row, position) columns, and every row attends to cache positions
0..keys-1 under a mask from its position (and the sliding window). It runs eagerly anywhere, the CPU
included.

`GraphDecoder` captures that step once per (batch bucket, key bucket) and replays it:
- batch buckets are powers of two up to the cache's rows; unused rows of a bucket feed the scratch row
  (the cache's last, never a slot's) at position 0, so they write nowhere that is read;
- key buckets are powers of two from `MIN_KEYS` up to the cache's length, so a step reads at most twice
  the keys its longest row holds;
- all graphs share one memory pool; a step's inputs go to the device in one copy from pinned memory, and
  the logits come back as a view of the graph's output (valid until the next step).
`compile=True` puts `torch.compile` (Inductor: fused norms, RoPE, activations and int8 dequantisation)
under the graphs; each bucket then compiles once, on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ulm.kv_cache import KVCache
from ulm.layers.attention import AttnPlan
from ulm.model import Transformer

MIN_KEYS = 256  # the smallest key bucket


def bucket(n: int, smallest: int, largest: int) -> int:
    """The power of two ≥ n (at least `smallest`), capped at `largest`."""
    b = smallest
    while b < n:
        b *= 2
    return min(b, largest)


def decode_plan(net: Transformer, cache: KVCache, rows: torch.Tensor, pos: torch.Tensor, keys: int) -> AttnPlan:
    """The attention plan of one token per row: rows, pos long [B] on the model's device; keys 0..keys-1."""
    window = net.config.sliding_window
    diff = pos[:, None] - torch.arange(keys, device=pos.device)  # [B, S]
    allowed = diff >= 0
    if window is not None:
        allowed &= diff < window
    return AttnPlan(net.rope.cos[pos][:, None, None], net.rope.sin[pos][:, None, None],  # [B, 1, 1, hd]
                    mask=allowed[:, None, None, :], cache=cache, rows=rows, pos=pos[:, None],  # mask [B, 1, 1, S]
                    row_index=rows[:, None], keys=slice(0, keys))


def decode_step(net: Transformer, cache: KVCache, inputs: torch.Tensor, keys: int) -> torch.Tensor:
    """Logits fp32 [B, V] of one decode step; inputs long [3, B] = (token ids, cache rows, positions)."""
    ids, rows, pos = inputs[0], inputs[1], inputs[2]  # [B] each
    plan = decode_plan(net, cache, rows, pos, keys)
    return net.forward_plan(ids[:, None], plan, last_only=True)[:, 0].float()  # [B, V]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor  # long [3, Bb] on the device: what the graph reads
    staging: torch.Tensor  # long [3, Bb], pinned host memory: what the next step copies in
    host: np.ndarray  # `staging` seen from numpy: a step's ids, rows and positions are written in place
    logits: torch.Tensor  # fp32 [Bb, V]: what the graph writes
    copied: torch.cuda.Event  # recorded after each copy out of `staging`


class GraphDecoder:
    """Captured decode steps over `cache` (whose last row is scratch) for `net` on a CUDA device."""

    def __init__(self, net: Transformer, cache: KVCache, compile: bool = False) -> None:
        self.net, self.cache = net, cache
        self.scratch = cache.max_batch - 1  # the last row: a step feeds rows 0..scratch - 1
        self._graphs: dict[tuple[int, int], _Captured] = {}
        self._pool = torch.cuda.graph_pool_handle()
        step: Callable[..., torch.Tensor] = decode_step
        if compile:
            step = torch.compile(decode_step, mode="max-autotune-no-cudagraphs", fullgraph=True, dynamic=False)
        self._step = step

    @property
    def captured(self) -> list[tuple[int, int]]:
        """The (batch bucket, key bucket) pairs captured so far."""
        return sorted(self._graphs)

    def step(self, ids: Sequence[int], rows: Sequence[int], pos: Sequence[int]) -> torch.Tensor:
        """Logits fp32 [B, V] of ids[b] fed to cache row rows[b] at position pos[b] (a view, valid until the
        next step); ValueError for rows or positions outside the cache."""
        B = len(ids)
        if not 0 < B <= self.scratch:
            raise ValueError(f"a graph step feeds 1..{self.scratch} rows, got {B}")
        if max(pos) >= self.cache.max_len or min(pos) < 0 or not all(0 <= r < self.scratch for r in rows):
            raise ValueError(f"a graph step's rows must be 0..{self.scratch - 1} and its positions "
                             f"0..{self.cache.max_len - 1}, got rows {list(rows)} at {list(pos)}")
        batch = bucket(B, 1, self.scratch)
        keys = bucket(max(pos) + 1, min(MIN_KEYS, self.cache.max_len), self.cache.max_len)
        captured = self._graphs.get((batch, keys)) or self._capture(batch, keys)
        captured.copied.synchronize()  # the last step's copy out of `staging` is done before it is rewritten
        host = captured.host  # no tensor is made on the way: three row writes into pinned memory
        host[0, :B], host[1, :B], host[2, :B] = ids, rows, pos
        host[:, B:] = [[0], [self.scratch], [0]]  # padding rows: token 0 into the scratch row at position 0
        captured.inputs.copy_(captured.staging, non_blocking=True)
        captured.copied.record()
        captured.graph.replay()
        return captured.logits[:B]

    def _capture(self, batch: int, keys: int) -> _Captured:
        device = self.net.device
        inputs = torch.zeros(3, batch, dtype=torch.long, device=device)
        inputs[1] = self.scratch  # warm-up and capture write to the scratch row only
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the capture: lazy inits, cuBLAS workspaces, compilation
            for _ in range(3):
                self._step(self.net, self.cache, inputs, keys)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits = self._step(self.net, self.cache, inputs, keys)
        staging = torch.zeros(3, batch, dtype=torch.long).pin_memory()
        copied = torch.cuda.Event()
        copied.record()
        captured = _Captured(graph, inputs, staging, staging.numpy(), logits, copied)
        self._graphs[(batch, keys)] = captured
        return captured
