"""Microbenchmark of the block-quant kernels: µs and GB/s per linear, beside µLM's int4 kernel and torch's
bf16 matmul on the same shapes, in the same run.

    python -m ulm.kquant.bench [--model FILE.gguf] [--rows 1,4] [--threads 2] [--repeats 9] [--precise] [--prefill]

Without --model, the linears of Qwen2.5-Coder-1.5B are built from seeded random blocks of the types its
Q4_K_M file holds; with --model, from that file's own tensors (every layer's, so that each call reads
memory the previous one did not, as a decode step does). Each engine cycles over enough copies of a
weight to exceed the last-level cache, so the figures are those of weights streaming from memory. Within
a repeat the engines run one after another on the same inputs, so a noisy spell of a shared machine hits
them alike; each figure is the median over repeats and copies. Every engine's weights sit in transparent
huge pages (`ulm.kquant.memory`), as the block-quant ones do in µLM. GB/s counts the weight bytes one call
reads (int4: 4-bit values and bf16 scale/zero pairs, 5 bits a weight; bf16: 16). `--precise` runs the
kernel with int16 activations; `--prefill` adds the kernel (int8, int16) against the dense path (bf16
unpacking + GEMM) at 16-512 rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ulm.kquant.linear import KQuantLinear, kernels_available
from ulm.kquant.memory import huge_pages_buffer
from ulm.kquant.samples import random_blocks
from ulm.quant import BlockTensor, Int4Linear, int4_from_float

STREAM_BYTES = 96 << 20  # each engine's copies of a weight add up to 3× this machine's 32 MB L3 at least
# The 1.5B's linears: name → parts (type, rows) over K inputs; 14 of its 28 w_down (and w_v) are Q6_K.
# name → (parts (type, rows), K, calls per decode step)
SHAPES_1_5B: dict[str, tuple[list[tuple[str, int]], int, int]] = {
    "wqkv Q4_K+Q6_K": ([("Q4_K", 1536), ("Q4_K", 256), ("Q6_K", 256)], 1536, 28),
    "wo Q4_K": ([("Q4_K", 1536)], 1536, 28),
    "w_gate_up Q4_K": ([("Q4_K", 8960), ("Q4_K", 8960)], 1536, 28),
    "w_down Q4_K": ([("Q4_K", 1536)], 8960, 14),
    "w_down Q6_K": ([("Q6_K", 1536)], 8960, 14),
    "lm_head Q6_K": ([("Q6_K", 151936)], 1536, 1),
}
PREFILL_ROWS = (16, 64, 128, 192, 256, 512)


@dataclass
class Linear:
    """One kind of linear of the model under test: its block-quant copies (other memory, or other layers of
    the file), how many calls of it one decode step makes, and the shape the baselines take."""

    name: str
    copies: list[KQuantLinear]
    per_step: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.copies[0].out_features, self.copies[0].in_features


def _huge_copy(t: Tensor) -> Tensor:
    """t copied into huge pages (every engine's weights sit in them, as the block-quant ones do)."""
    nbytes = t.numel() * t.element_size()
    return huge_pages_buffer(nbytes).view(t.dtype).view(t.shape).copy_(t)


def _synthetic(name: str, spec: list[tuple[str, int]], k: int, per_step: int, seed: int) -> Linear:
    first = KQuantLinear.from_blocks([random_blocks(t, n, k, seed=seed + i) for i, (t, n) in enumerate(spec)])
    copies = [first] + [KQuantLinear(first.spec, k, _huge_copy(first.data), first.layout)
                        for _ in range(_copies(first.data.numel()) - 1)]
    return Linear(name, copies, per_step)


def _copies(nbytes: int) -> int:
    return max(1, -(-STREAM_BYTES // nbytes))


def synthetic_linears() -> list[Linear]:
    """The 1.5B's linears from random blocks (copies of one weight: the same bytes, other memory)."""
    return [_synthetic(name, spec, k, per_step, seed=10 * i)
            for i, (name, (spec, k, per_step)) in enumerate(SHAPES_1_5B.items())]


def model_linears(path: Path) -> list[Linear]:
    """A GGUF file's linears, every layer's, grouped by kind (w_down and the fused q/k/v by their types)."""
    from ulm.loading.gguf import read_gguf_blocks

    config, raw = read_gguf_blocks(path)
    groups: dict[str, list[KQuantLinear]] = {}

    def add(kind: str, parts: Sequence[BlockTensor]) -> None:
        types = "+".join(dict.fromkeys(p.ggml_type for p in parts))
        groups.setdefault(f"{kind} {types}", []).append(KQuantLinear.from_blocks(parts))

    for i in range(config.n_layers):
        p = f"layers.{i}."
        add("wqkv", [raw[f"{p}attn.w{x}.weight"] for x in "qkv"])
        add("wo", [raw[f"{p}attn.wo.weight"]])
        add("w_gate_up", [raw[f"{p}mlp.w_gate.weight"], raw[f"{p}mlp.w_up.weight"]])
        add("w_down", [raw[f"{p}mlp.w_down.weight"]])
    add("lm_head", [raw["lm_head.weight" if "lm_head.weight" in raw else "embed.weight"]])
    return [Linear(name, lins, len(lins)) for name, lins in groups.items()]


def _int4_copies(n: int, k: int) -> list[Int4Linear]:
    lin = Int4Linear.quantize(int4_from_float(torch.randn(n, k) * 0.02))
    lin.use_native_kernel()
    out = []
    for _ in range(_copies(lin.packed.numel() + 2 * lin.scales_zeros.numel())):
        other = Int4Linear(_huge_copy(lin.packed), _huge_copy(lin.scales_zeros))
        other.layout = lin.layout
        out.append(other)
    return out


def _time(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def decode_rows(linears: list[Linear], rows: Sequence[int], repeats: int) -> None:
    """µs and GB/s per call at each row count: the block-quant kernel, the int4 kernel, bf16 F.linear."""
    print(f"{'linear':22s} {'N×K':>12s} {'rows':>4s} | {'µs kquant':>9s} {'int4':>7s} {'bf16':>7s} | "
          f"{'GB/s kquant':>11s} {'int4':>5s} {'bf16':>5s} | bits/w")
    totals = dict.fromkeys(rows, 0.0)
    for lin in linears:
        n, k = lin.shape
        int4 = _int4_copies(n, k)
        dense = [_huge_copy(torch.randn(n, k).bfloat16()) for _ in range(_copies(2 * n * k))]
        sizes = (lin.copies[0].data.numel(), int4[0].packed.numel() + 2 * int4[0].scales_zeros.numel(), 2 * n * k)
        for m in rows:
            x = torch.randn(m, k).bfloat16()
            runs: list[list[float]] = [[], [], []]
            for _ in range(repeats):
                for i in range(max(len(lin.copies), len(int4), len(dense))):
                    a, b, c = lin.copies[i % len(lin.copies)], int4[i % len(int4)], dense[i % len(dense)]
                    runs[0].append(_time(a.matmul, x))
                    runs[1].append(_time(b.matmul, x))
                    runs[2].append(_time(F.linear, x, c))
            med = [statistics.median(t) for t in runs]
            totals[m] += med[0] * lin.per_step
            print(f"{lin.name:22s} {f'{n}×{k}':>12s} {m:4d} | {med[0] * 1e6:9.0f} {med[1] * 1e6:7.0f} "
                  f"{med[2] * 1e6:7.0f} | {sizes[0] / med[0] / 1e9:11.1f} {sizes[1] / med[1] / 1e9:5.1f} "
                  f"{sizes[2] / med[2] / 1e9:5.1f} | {8 * sizes[0] / (n * k):.2f}")
        del int4, dense
    for m, total in totals.items():
        print(f"rows {m}: the block-quant linears of one step sum to {total * 1e3:.1f} ms")


def prefill_rows(linears: list[Linear], repeats: int) -> None:
    """ms per call at prefill sizes: the kernel with int8 and with int16 activations against bf16 unpacking +
    dense GEMM (the fastest of the repeats: compute-bound work, where the slow ones are the machine's noise)."""
    print(f"{'linear':22s} {'rows':>4s} | {'ms int8':>7s} {'int16':>7s} {'dense':>7s}")
    for lin in linears:
        if lin.name.startswith("lm_head"):
            continue  # a prefill runs the head on its last token only
        a = lin.copies[0]
        int8, int16 = a, KQuantLinear(a.spec, a.in_features, a.data, a.layout, precise=True)
        for m in PREFILL_ROWS:
            x = torch.randn(m, a.in_features).bfloat16()
            runs: list[list[float]] = [[], [], []]
            for _ in range(repeats):
                runs[0].append(_time(int8.matmul, x))
                runs[1].append(_time(int16.matmul, x))
                runs[2].append(_time(a.dense_matmul, x))
            print(f"{lin.name:22s} {m:4d} | " + " ".join(f"{min(t) * 1e3:7.2f}" for t in runs))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ulm.kquant.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF file whose linears to run (default: random 1.5B shapes)")
    parser.add_argument("--rows", default="1,4", help="rows per call, comma-separated (default 1,4)")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenMP threads (default 2)")
    parser.add_argument("--repeats", type=int, default=9, help="rounds over every engine (default 9)")
    parser.add_argument("--precise", action="store_true", help="int16 activations in the decode figures")
    parser.add_argument("--prefill", action="store_true", help="also time the kernel against the dense path")
    args = parser.parse_args(argv)
    if not kernels_available():
        raise SystemExit("the native block-quant kernels are not available here (AVX-512 VNNI and a C compiler)")
    torch.set_num_threads(args.threads)
    linears = model_linears(args.model) if args.model else synthetic_linears()
    for lin in linears:
        for copy in lin.copies:
            copy.precise = args.precise
    decode_rows(linears, [int(r) for r in args.rows.split(",")], args.repeats)
    if args.prefill:
        prefill_rows(linears, args.repeats)


if __name__ == "__main__":
    main()
