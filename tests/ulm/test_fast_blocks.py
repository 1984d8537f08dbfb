"""The fast mode of a GGUF in block quants (ulm/fast/blocks.py): a tiny Qwen2-shaped file of random Q4_K, Q5_K,
Q6_K, Q8_0 and Q5_0 blocks written with the gguf package runs from those blocks (no float weights), tracks
the exact mode's logits, decodes in one fused native step equal to the generic forward, caches its repacked
tiles (within the disk budget) and reports its stages; files it cannot run that way take the int4 path.

Run: .venv/bin/python -m pytest tests/ulm/test_fast_blocks.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.ulm.loading.gguf_files import add_byte_level_tokenizer, write_gguf
from ulm import progress
from ulm.config import ModelConfig
from ulm.convert.names import gguf_name
from ulm.fast import FastTransformer, load_fast
from ulm.fast import blocks as fast_blocks
from ulm.kernels import native
from ulm.kernels.decode import DecodeBlocks
from ulm.kquant import KQuantEmbedding, KQuantLinear, kernels_available
from ulm.kquant.samples import random_blocks
from ulm.kv_cache import KVCache
from ulm.loading import load_checkpoint
from ulm.loading.cache import entry_dir
from ulm.loading.gguf import read_gguf_blocks
from ulm.model import Transformer, build_model, canonical_shapes
from ulm.quant import Int4Linear
from ulm.registry import ModelSource

# K multiples of 256 for the K-quants; 2 query heads of 128 over 1 KV head, as Qwen2.5's GQA
TINY = ModelConfig(arch="qwen2", vocab_size=320, dim=256, n_layers=2, n_heads=2, n_kv_heads=1, hidden_dim=512,
                   max_seq_len=128, rope_theta=1000000.0, norm_eps=1e-6, tie_embeddings=False, qkv_bias=True,
                   bos_token_id=1, eos_token_ids=(2,))
# every block type in some linear; layer 0's fused q/k/v mixes Q4_K and Q6_K parts, as the 1.5B's do
TYPES = {"attn.wq": ("Q4_K", "Q5_0"), "attn.wk": ("Q4_K", "Q5_0"), "attn.wv": ("Q6_K", "Q8_0"),
         "attn.wo": ("Q5_K", "Q5_0"), "mlp.w_gate": ("Q4_K", "Q5_0"), "mlp.w_up": ("Q4_K", "Q5_0"),
         "mlp.w_down": ("Q6_K", "Q4_K")}


def write_block_gguf(path: Path, config: ModelConfig = TINY, head: str | None = "Q6_K", embed: str = "Q4_K",
                     float_linear: str | None = None) -> Path:
    """A Qwen2-shaped GGUF of seeded random blocks (head None: tied to the embedding), F32 norms and biases,
    and a byte-level tokenizer; `float_linear` names one linear stored as F32 instead."""
    state = {n: torch.rand(s, generator=torch.Generator().manual_seed(i)) * 0.2 + 0.9 if "norm" in n
             else torch.randn(s, generator=torch.Generator().manual_seed(i)) * 0.02
             for i, (n, s) in enumerate(canonical_shapes(config).items()) if n.endswith(".bias") or "norm" in n}
    raw, seed = {}, 100
    for name, shape in canonical_shapes(config).items():
        if name in state or (name == "lm_head.weight" and head is None):
            continue
        if name == float_linear:
            state[name] = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.05
            continue
        if name == "embed.weight":
            kind = embed
        elif name == "lm_head.weight":
            kind = head
        else:
            layer = int(name.split(".")[1])
            kind = TYPES[name.split(".", 2)[2].removesuffix(".weight")][layer % 2]
        assert kind is not None
        seed += 1
        blocks = random_blocks(kind, shape[0], shape[1], seed=seed).blocks
        raw[gguf_name(name)] = (blocks, kind)
    return write_gguf(path, config.with_(tie_embeddings=head is None), state, raw=raw,
                      extra_kv=lambda w: add_byte_level_tokenizer(w, config.vocab_size))


@pytest.fixture(scope="module")
def block_source(tmp_path_factory: pytest.TempPathFactory) -> ModelSource:
    return ModelSource("tiny-kquant", "gguf", write_block_gguf(tmp_path_factory.mktemp("blocks") / "tiny.gguf"))


def needs_kernels() -> None:
    if native.library() is None:
        pytest.fail("the native kernels did not build on this machine (a C compiler is part of the set-up)")
    if not kernels_available():
        pytest.skip("the block-quant kernels need AVX-512 VNNI; elsewhere these files take the int4 path (tested)")


def exact_model(source: ModelSource) -> Transformer:
    config, state = load_checkpoint(source, torch.float32)
    return build_model(config, state, torch.float32)


def test_a_block_quant_file_runs_from_its_blocks_with_no_float_weights(block_source: ModelSource) -> None:
    needs_kernels()
    fast = load_fast(block_source)
    assert isinstance(fast, FastTransformer) and isinstance(fast.embed, KQuantEmbedding)
    linears = [m for m in fast.modules() if isinstance(m, KQuantLinear)]
    assert len(linears) == 4 * TINY.n_layers + 1 and all(lin.layout == "tiles" for lin in linears)
    assert fast.layers[0].attn.wqkv.spec == (("Q4_K", 256), ("Q4_K", 128), ("Q6_K", 128))
    assert fast.lm_head.out_dtype == torch.float32 and fast.lm_head.spec == (("Q6_K", TINY.vocab_size),)
    assert [m.precise for m in (fast.layers[1].attn.wqkv, fast.layers[1].mlp.w_gate_up, fast.layers[1].mlp.w_down)] \
        == [False, True, True]
    floats = [(n, t) for n, t in fast.state_dict().items() if t.is_floating_point() and not n.startswith("rope.")]
    assert all(t.dim() == 1 and t.dtype == torch.float32 for _, t in floats)  # norms and q/k/v biases only
    assert {n for n, _ in floats} >= {"layers.0.attn.wqkv.bias", "norm.weight"}
    assert fast.dtype == torch.bfloat16 and fast.device == torch.device("cpu")


@pytest.mark.parametrize("precise", [False, True], ids=["policy", "int16-everywhere"])
def test_fast_logits_track_the_exact_mode_of_the_same_blocks(block_source: ModelSource, precise: bool) -> None:
    needs_kernels()
    ids = torch.randint(0, TINY.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = exact_model(block_source)(ids)
        fast = load_fast(block_source)
        if precise:
            for lin in fast.modules():
                if isinstance(lin, KQuantLinear):
                    lin.precise = True
            fast.bind()
        whole = fast(ids)  # the generic forward, all 24 positions at once: a prompt's tokens (int8 everywhere)
        cache = KVCache(fast.config, 2, 32, torch.bfloat16)
        stepped = torch.cat([fast(ids[:, t:t + 1], cache=cache, start=t) for t in range(24)], dim=1)  # decoded
    # against fp32, measured: int8 activations 4.6-4.7% (prompt tokens; decoded ones on q/k/v and o, the MLP
    # taking int16); with int16 on every linear a decoded token keeps only the bf16 rounding: 0.7%
    for got, bound in ((whole, 0.07), (stepped, 0.015 if precise else 0.07)):
        assert got.dtype == torch.float32 and got.shape == want.shape
        err = ((got - want).norm() / want.norm()).item()
        assert err < bound, err
        assert (got.argmax(-1) == want.argmax(-1)).float().mean().item() >= 0.95


@pytest.mark.parametrize("loop", ["one-native-call", "native-layers"])
def test_block_quant_decode_steps_equal_the_generic_forward_bit_for_bit(block_source: ModelSource, loop: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    needs_kernels()
    if loop == "native-layers":
        monkeypatch.setattr(DecodeBlocks, "make", classmethod(lambda cls, *args: None))
    fast = load_fast(block_source)
    ids = torch.randint(0, TINY.vocab_size, (2, 20), generator=torch.Generator().manual_seed(5))
    rows = torch.tensor([2, 0])
    lean, generic = (KVCache(fast.config, 3, 40, torch.bfloat16) for _ in range(2))
    with torch.inference_mode():
        for cache in (lean, generic):
            Transformer.forward(fast, ids[:, :9], cache=cache, start=0, rows=rows)
        assert fast.plan is not None and (fast.plan.bind(lean).blocks is not None) == (loop == "one-native-call")
        for pos in range(9, 20):
            start = torch.tensor([pos, pos - 4])  # rows at different positions, as in the server's batch
            got = fast(ids[:, pos:pos + 1], cache=lean, start=start, rows=rows)
            want = Transformer.forward(fast, ids[:, pos:pos + 1], cache=generic, start=start, rows=rows)
            assert torch.equal(got, want), f"step at {pos} differs"
    assert torch.equal(lean.k, generic.k) and torch.equal(lean.v, generic.v)


def test_a_short_block_quant_prefill_is_the_same_in_any_chunks_and_in_a_ragged_step(
        block_source: ModelSource) -> None:
    """A prompt's tokens take int8 activations in the precise linears wherever they run (one native step,
    chunks of it, beside a decoding row in a ragged step) and a decoded token int16, so each row's logits
    and cache entries are those of running it alone."""
    needs_kernels()
    fast = load_fast(block_source)
    ids = torch.randint(0, TINY.vocab_size, (1, 12), generator=torch.Generator().manual_seed(8))
    whole, chunked = (KVCache(fast.config, 1, 32, torch.bfloat16) for _ in range(2))
    apart, together = (KVCache(fast.config, 2, 32, torch.bfloat16) for _ in range(2))
    with torch.inference_mode():
        got = fast(ids, cache=whole, start=0)  # [1, 12, V] in one native step
        parts = torch.cat([fast(ids[:, :5], cache=chunked, start=0), fast(ids[:, 5:], cache=chunked, start=5)], 1)
        for cache in (apart, together):  # row 1 holds a prefix and decodes next
            fast(ids[:, :3], cache=cache, start=0, rows=torch.tensor([1]))
        decoded = fast(ids[:, 3:4], cache=apart, start=3, rows=torch.tensor([1]))  # [1, 1, V]
        prompt = fast(ids[:, :7], cache=apart, start=0, rows=torch.tensor([0]), last_only=True)  # [1, 1, V]
        # row 0's prompt chunk listed before row 1's decoded token: reordered inside, logits in the given order
        both = fast.forward_ragged([ids[0, :7].tolist(), [int(ids[0, 3])]], together, [0, 1], [0, 3])
    assert torch.equal(got, parts) and torch.equal(whole.k, chunked.k) and torch.equal(whole.v, chunked.v)
    assert both is not None and torch.equal(both[0], prompt[0, 0]) and torch.equal(both[1], decoded[0, 0])
    assert torch.equal(apart.k, together.k) and torch.equal(apart.v, together.v)


def test_the_repacked_tiles_are_cached_and_a_damaged_copy_is_repacked(block_source: ModelSource,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    needs_kernels()
    ids = torch.randint(0, TINY.vocab_size, (1, 10), generator=torch.Generator().manual_seed(2))
    stages: list[str] = []
    with torch.inference_mode(), progress.listen(lambda s: stages.append(s.name) if s.finished else None):
        first = load_fast(block_source)(ids)
        tiles = entry_dir(block_source) / fast_blocks.TILES
        last = fast_blocks.layout(*read_gguf_blocks(block_source))[-1]
        assert tiles.is_file() and tiles.stat().st_size == fast_blocks.HEADER + last.offset + last.nbytes
        monkeypatch.setattr(fast_blocks, "_repack", lambda *a: pytest.fail("repacked although the tiles are cached"))
        assert torch.equal(load_fast(block_source)(ids), first)
        monkeypatch.undo()
        with tiles.open("r+b") as f:
            f.truncate(tiles.stat().st_size - 100)  # cut short: read as missing, repacked and saved again
        assert torch.equal(load_fast(block_source)(ids), first)
    assert "repacking tiny-kquant" in stages and "loading tiny-kquant" in stages
    assert tiles.stat().st_size > fast_blocks.HEADER


def test_the_tiles_are_not_cached_past_the_disk_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_kernels()
    source = ModelSource("over-budget", "gguf", write_block_gguf(tmp_path / "tiny.gguf"))
    monkeypatch.setattr(fast_blocks, "DISK_BUDGET", 0.5)  # the tiles alone are about the file's size
    load_fast(source)
    assert not (entry_dir(source) / fast_blocks.TILES).exists()


def test_a_tied_head_runs_from_the_embeddings_blocks(tmp_path: Path) -> None:
    needs_kernels()
    source = ModelSource("tied", "gguf", write_block_gguf(tmp_path / "tied.gguf", head=None, embed="Q8_0"))
    ids = torch.randint(0, TINY.vocab_size, (1, 8), generator=torch.Generator().manual_seed(3))
    fast = load_fast(source)
    assert fast.lm_head.spec == (("Q8_0", TINY.vocab_size),) and fast.embed.ggml_type == "Q8_0"
    with torch.inference_mode():
        want, got = exact_model(source)(ids), fast(ids)
    assert ((got - want).norm() / want.norm()).item() < 0.07  # as for the untied head above (measured 5%)
    assert (got.argmax(-1) == want.argmax(-1)).float().mean().item() >= 0.95


def test_files_that_do_not_all_run_from_blocks_take_the_int4_path(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_block_gguf(tmp_path / "f.gguf", float_linear="layers.1.attn.wv.weight")
    float_v = ModelSource("float-v", "gguf", path)
    fast = load_fast(float_v)  # one F32 linear: the whole model is converted as before
    assert isinstance(fast.layers[0].attn.wqkv, Int4Linear) and not any(
        isinstance(m, KQuantLinear) for m in fast.modules())
    monkeypatch.setattr(fast_blocks, "kernels_available", lambda: False)  # a CPU without AVX-512 VNNI
    blocks = ModelSource("no-vnni", "gguf", write_block_gguf(tmp_path / "b.gguf"))
    assert isinstance(load_fast(blocks).layers[0].attn.wqkv, Int4Linear)
