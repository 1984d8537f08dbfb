"""ulm.loading.gguf: GGUF → config + canonical weights (dequantisation, Q/K un-permute, raw blocks) and the
clear errors for truncated, corrupted or unsupported files.

Run: .venv/bin/python -m pytest tests/ulm/loading/test_gguf.py -q
"""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from tests.ulm.loading.conftest import TINY, random_state
from tests.ulm.loading.gguf_files import permute_rows, write_gguf
from ulm.config import ModelConfig
from ulm.errors import ModelLoadError, UnsupportedError
from ulm.loading.gguf import read_gguf, read_gguf_blocks, unpermute_rows
from ulm.model import build_model


def test_unpermute_inverts_llama_cpp_permutation() -> None:
    w = np.arange(8 * 16 * 3).reshape(8 * 16, 3)
    np.testing.assert_array_equal(unpermute_rows(permute_rows(w, 8), 8), w)
    assert not np.array_equal(permute_rows(w, 8), w)


def test_metadata_becomes_the_config(tiny_gguf: Path) -> None:
    config, _ = read_gguf(tiny_gguf)
    assert config.with_(norm_eps=1e-6) == TINY.with_(norm_eps=1e-6)
    assert config.norm_eps == pytest.approx(1e-6)  # stored as float32 in the file


def test_float_tensors_are_exact_and_quantised_ones_within_their_step(tiny_gguf: Path,
                                                                       tiny_state: dict[str, torch.Tensor]) -> None:
    _, state = read_gguf(tiny_gguf)
    assert set(state) == set(tiny_state)
    torch.testing.assert_close(state["norm.weight"], tiny_state["norm.weight"], atol=0, rtol=0)
    torch.testing.assert_close(state["embed.weight"].float(), tiny_state["embed.weight"], atol=1e-3, rtol=1e-3)
    assert state["embed.weight"].dtype == torch.float16
    # Q8_0 steps are max|w|/127 per 32 weights; Q4_x steps max-range/15: errors stay below a step
    for name, tol in (("layers.1.mlp.w_down.weight", 0.02), ("layers.0.attn.wq.weight", 0.15),
                      ("layers.0.attn.wk.weight", 0.15), ("layers.1.attn.wo.weight", 0.15)):
        err = (state[name] - tiny_state[name]).abs().max().item()
        assert 0 < err < tol, name  # > 0: really quantised; small: rows in the right (un-permuted) order


def test_raw_blocks_dequantise_to_the_loaded_weights(tiny_gguf: Path) -> None:
    _, state = read_gguf(tiny_gguf)
    config, raw = read_gguf_blocks(tiny_gguf)
    assert config == read_gguf(tiny_gguf)[0]
    wq = raw["layers.0.attn.wq.weight"]
    assert (wq.ggml_type, wq.shape, wq.blocks.shape, wq.blocks.dtype) == ("Q4_1", (64, 64), (64, 2 * 20), np.uint8)
    for name in ("layers.0.attn.wq.weight", "layers.1.attn.wk.weight", "layers.0.mlp.w_up.weight"):
        t = raw[name]
        values = gguf.quants.dequantize(t.blocks, gguf.GGMLQuantizationType[t.ggml_type])
        np.testing.assert_array_equal(values, state[name].numpy())


def test_qwen2_gguf_keeps_row_order_and_reads_biases(tmp_path: Path) -> None:
    config = TINY.with_(arch="qwen2", qkv_bias=True, tie_embeddings=False)
    state = random_state(config, seed=3)
    path = write_gguf(tmp_path / "qwen.gguf", config, state)
    loaded_config, loaded = read_gguf(path)
    assert loaded_config.arch == "qwen2" and loaded_config.qkv_bias and not loaded_config.tie_embeddings
    for name, tensor in state.items():
        torch.testing.assert_close(loaded[name], tensor, atol=0, rtol=0)


def _k_scale_min(scales: bytes, j: int) -> tuple[int, int]:
    """ggml-quants.c get_scale_min_k4: the 6-bit scale and min of sub-block j of a K-quant block."""
    if j < 4:
        return scales[j] & 63, scales[j + 4] & 63
    return (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4)


def _q4_k_reference(block: bytes) -> list[float]:
    """ggml-quants.c dequantize_row_q4_K for one block of 256, written out scalar."""
    d, dmin = struct.unpack("<2e", block[:4])
    scales, qs = block[4:16], block[16:]

    out: list[float] = []
    for j in range(4):
        (sc1, m1), (sc2, m2) = _k_scale_min(scales, 2 * j), _k_scale_min(scales, 2 * j + 1)
        q = qs[32 * j:32 * j + 32]
        out += [d * sc1 * (b & 0xF) - dmin * m1 for b in q]
        out += [d * sc2 * (b >> 4) - dmin * m2 for b in q]
    return out


def _q6_k_reference(block: bytes) -> list[float]:
    """ggml-quants.c dequantize_row_q6_K for one block of 256, written out scalar."""
    ql, qh, sc = block[:128], block[128:192], struct.unpack("<16b", block[192:208])
    (d,) = struct.unpack("<e", block[208:210])
    out = [0.0] * 256
    for n in range(2):
        for lane in range(32):
            i, h, s = 64 * n + lane, qh[32 * n + lane], 8 * n + lane // 16
            q1 = ((ql[i] & 0xF) | (((h >> 0) & 3) << 4)) - 32
            q2 = ((ql[i + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32
            q3 = ((ql[i] >> 4) | (((h >> 4) & 3) << 4)) - 32
            q4 = ((ql[i + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32
            for k, (q, si) in enumerate(((q1, s), (q2, s + 2), (q3, s + 4), (q4, s + 6))):
                out[128 * n + lane + 32 * k] = d * sc[si] * q
    return out


def _q5_k_reference(block: bytes) -> list[float]:
    """ggml-quants.c dequantize_row_q5_K for one block of 256, written out scalar."""
    d, dmin = struct.unpack("<2e", block[:4])
    scales, qh, qs = block[4:16], block[16:48], block[48:]

    out: list[float] = []
    for j in range(4):
        (sc1, m1), (sc2, m2) = _k_scale_min(scales, 2 * j), _k_scale_min(scales, 2 * j + 1)
        u1, u2 = 1 << (2 * j), 2 << (2 * j)
        q = qs[32 * j:32 * j + 32]
        out += [d * sc1 * ((b & 0xF) + (16 if h & u1 else 0)) - dmin * m1 for b, h in zip(q, qh, strict=True)]
        out += [d * sc2 * ((b >> 4) + (16 if h & u2 else 0)) - dmin * m2 for b, h in zip(q, qh, strict=True)]
    return out


@pytest.mark.parametrize(("kind", "size", "scale_at", "reference"),
                         [("Q4_K", 144, (0, 2), _q4_k_reference), ("Q5_K", 176, (0, 2), _q5_k_reference),
                          ("Q6_K", 210, (208,), _q6_k_reference)])
def test_k_quants_match_the_ggml_reference(tmp_path: Path, kind: str, size: int, scale_at: tuple[int, ...],
                                           reference: object) -> None:
    config = ModelConfig(vocab_size=32, dim=256, n_layers=1, n_heads=4, n_kv_heads=4, hidden_dim=256,
                         max_seq_len=64, tie_embeddings=True)
    state = random_state(config)
    del state["layers.0.mlp.w_up.weight"]
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, size=(256, size), dtype=np.uint8)
    for offset in scale_at:  # sane f16 super-block scales instead of random bits (which may be NaN)
        blocks[:, offset:offset + 2] = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
    path = write_gguf(tmp_path / "k.gguf", config, state, raw={"blk.0.ffn_up.weight": (blocks, kind)})
    _, loaded = read_gguf(path)
    expected = np.array([reference(bytes(row)) for row in blocks], dtype=np.float32)  # type: ignore[operator]
    np.testing.assert_allclose(loaded["layers.0.mlp.w_up.weight"].numpy(), expected, rtol=1e-6, atol=1e-6)


def test_bf16_tensors_load_as_bf16(tmp_path: Path) -> None:
    state = random_state(TINY)
    path = write_gguf(tmp_path / "bf.gguf", TINY, state, types={"layers.0.mlp.w_down.weight": "BF16"})
    _, loaded = read_gguf(path)
    w = loaded["layers.0.mlp.w_down.weight"]
    assert w.dtype == torch.bfloat16
    torch.testing.assert_close(w, state["layers.0.mlp.w_down.weight"].bfloat16(), atol=0, rtol=0)


@pytest.mark.parametrize("keep", [3, 40, 300, 1500, -100, -1], ids=lambda k: f"keep{k}")
def test_truncated_file_is_a_clear_load_error(tiny_gguf: Path, tmp_path: Path, keep: int) -> None:
    data = tiny_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep] if keep > 0 else data[:len(data) + keep])
    with pytest.raises(ModelLoadError, match=r"cut\.gguf: "):
        read_gguf(cut)


def test_bad_magic_is_a_clear_load_error(tiny_gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUX" + tiny_gguf.read_bytes()[4:])
    with pytest.raises(ModelLoadError, match=r"bad\.gguf: not a readable GGUF file"):
        read_gguf(bad)


def test_nan_weights_are_named(tmp_path: Path) -> None:
    state = random_state(TINY)
    state["layers.1.attn.wo.weight"][3, 5] = float("nan")
    path = write_gguf(tmp_path / "nan.gguf", TINY, state)
    with pytest.raises(ModelLoadError, match=r"tensor blk\.1\.attn_output\.weight holds NaN"):
        read_gguf(path)


def test_corrupted_tensor_type_is_a_clear_load_error(tiny_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    name = b"output_norm.weight"
    at = data.index(name) + len(name)  # then: n_dims u32, dims u64 × n, type u32
    n_dims = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, at + 4 + 8 * n_dims, 250)  # a GGML type id that does not exist
    bad = tmp_path / "type.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"type\.gguf: "):
        read_gguf(bad)


@pytest.mark.parametrize(("kind", "tol"), [("Q5_0", 0.08), ("Q5_1", 0.06)])
def test_q5_blocks_round_trip_within_their_step(tmp_path: Path, kind: str, tol: float) -> None:
    state = random_state(TINY)
    path = write_gguf(tmp_path / "q5.gguf", TINY, state, types={"layers.0.mlp.w_gate.weight": kind})
    _, loaded = read_gguf(path)
    err = (loaded["layers.0.mlp.w_gate.weight"] - state["layers.0.mlp.w_gate.weight"]).abs().max().item()
    assert 0 < err < tol


def test_unsupported_tensor_type_is_named(tmp_path: Path) -> None:
    state = random_state(TINY)
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.IQ4_NL]
    blocks = np.zeros((96, 64 // block * size), dtype=np.uint8)  # a valid IQ4_NL tensor of the gate's shape
    del state["layers.0.mlp.w_gate.weight"]
    path = write_gguf(tmp_path / "iq.gguf", TINY, state, raw={"blk.0.ffn_gate.weight": (blocks, "IQ4_NL")})
    with pytest.raises(UnsupportedError, match=r"blk\.0\.ffn_gate\.weight has GGML type IQ4_NL"):
        read_gguf(path)


def test_unknown_architecture_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedError, match=r"architecture 'gpt2' is not supported \(supported: llama, qwen2\)"):
        read_gguf(path)


def test_metadata_that_does_not_fit_the_weights_names_the_tensors(tmp_path: Path) -> None:
    state = random_state(TINY)
    path = write_gguf(tmp_path / "kv.gguf", TINY, state,
                      extra_kv=lambda w: w.add_uint32("llama.feed_forward_length", 128))  # the real one is 96
    with pytest.raises(ModelLoadError, match=r"kv\.gguf: weights do not fit the config: shape mismatch: "
                                             r"layers\.0\.mlp\.w_gate\.weight \(96, 64\) \(config says \(128, 64\)\)"):
        read_gguf(path)


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    state = random_state(TINY)
    del state["layers.1.mlp_norm.weight"]
    path = write_gguf(tmp_path / "missing.gguf", TINY, state)
    with pytest.raises(ModelLoadError, match=r"missing tensors layers\.1\.mlp_norm\.weight"):
        read_gguf(path)


def test_unknown_tensor_is_named(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "extra.gguf", TINY, random_state(TINY),
                      raw={"blk.0.ffn_gate_exps.weight": (np.zeros((4, 64), dtype=np.float32), "F32")})
    with pytest.raises(UnsupportedError, match=r"GGUF tensor 'blk\.0\.ffn_gate_exps\.weight' is not part of"):
        read_gguf(path)


@torch.inference_mode()
def test_loaded_gguf_runs(tiny_gguf: Path) -> None:
    config, state = read_gguf(tiny_gguf)
    logits = build_model(config, state)(torch.tensor([[1, 5, 9, 200]]))
    assert logits.shape == (1, 4, 320) and torch.isfinite(logits).all()


def test_random_header_corruption_never_escapes_as_anything_but_a_load_error(tiny_gguf: Path,
                                                                            tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    header_end = gguf.GGUFReader(str(tiny_gguf)).data_offset  # metadata + tensor infos
    rng = np.random.default_rng(7)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(60):
        damaged = bytearray(data)
        for pos in rng.integers(4, header_end, size=int(rng.integers(1, 4))):
            damaged[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"fuzz{i}.gguf"
        path.write_bytes(bytes(damaged))
        try:
            read_gguf(path)
            outcomes["loaded"] += 1  # e.g. a changed byte inside a name's padding or a float's low bits
        except ModelLoadError as e:  # UnsupportedError included
            assert "\n" not in str(e) and str(path) in str(e)
            outcomes["refused"] += 1
        path.unlink()
    assert outcomes["refused"] > 30
