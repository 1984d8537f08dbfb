"""Export to HF safetensors and GGUF: transformers loads both with µLM's logits (Llama with a tied head and GQA,
Qwen2 with q/k/v biases, a model trained by `ulm train`), the GGUF's tokenizer encodes like the original, rope
scalings survive the trip through µLM's own GGUF reader, and what neither format can hold is refused by name.

Run: .venv/bin/python -m pytest tests/ulm/convert/test_export.py -q   (slow: transformers loads every export)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import ulm
from tests.ulm.train.runs import tiny_run
from ulm.cli import app
from ulm.config import RopeScaling
from ulm.convert.errors import ConvertError
from ulm.convert.gguf_export import export_gguf
from ulm.convert.hf_export import export_hf
from ulm.convert.source import Source, load_source
from ulm.loading import load_checkpoint
from ulm.model import build_model
from ulm.registry import ModelSource

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow
runner = CliRunner()
IDS = torch.tensor([[1, 504, 2231, 77, 9, 40000, 12, 311], [2, 3, 4, 5, 6, 7, 8, 9]])
ATOL = 1e-4


def hf_logits(path: Path, **kwargs: object) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kwargs).eval()
    with torch.inference_mode():
        return model(IDS).logits


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path) -> Path:
    """A model trained by `ulm train` (tiny, vocabulary 512, untied head)."""
    from ulm.train.trainer import RunSpec, run_training

    out = tmp_path_factory.mktemp("trained") / "run"
    run_training(RunSpec(small_dataset, out, tiny_run(steps=5, model={"tie_embeddings": False}), quiet=True))
    return out


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir", "trained_dir"])
def test_hf_and_gguf_exports_load_in_transformers_with_the_same_logits(fixture: str, tmp_path: Path,
                                                                     request: pytest.FixtureRequest) -> None:
    source = request.getfixturevalue(fixture)
    ids = IDS % load_source(str(source)).config.vocab_size
    ours = ulm.load(str(source)).logits(ids)
    assert ours.abs().max() > 0.1
    for args in (["hf", str(source), "--out", str(tmp_path / "hf")],
                 ["gguf", str(source), "--out", str(tmp_path / "gguf" / "m.gguf"), "--type", "f32"]):
        result = runner.invoke(app, ["convert", *args])
        assert result.exit_code == 0, result.output
    from transformers import AutoModelForCausalLM

    for path, kwargs in ((tmp_path / "hf", {}), (tmp_path / "gguf", {"gguf_file": "m.gguf"})):
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kwargs).eval()
        with torch.inference_mode():
            torch.testing.assert_close(model(ids).logits, ours, atol=ATOL, rtol=0)
    # µLM reads both back as well (the weights; the GGUF's tokenizer has a test of its own).
    torch.testing.assert_close(ulm.load(str(tmp_path / "hf")).logits(ids), ours, atol=ATOL, rtol=0)
    config, state = load_checkpoint(ModelSource("m", "gguf", tmp_path / "gguf" / "m.gguf"), use_cache=False)
    with torch.inference_mode():
        torch.testing.assert_close(build_model(config, state)(ids), ours, atol=ATOL, rtol=0)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == ("qwen2" if fixture == "tiny_qwen2_dir" else "llama")
    assert (tmp_path / "hf" / "tokenizer.json").is_file()


@pytest.mark.parametrize(("dtype", "ftype", "atol"), [("bfloat16", "bf16", 0.05), ("float16", "f16", 5e-3)])
def test_half_precision_exports(tmp_path: Path, tiny_llama_dir: Path, dtype: str, ftype: str, atol: float) -> None:
    src = load_source(str(tiny_llama_dir))
    ours = ulm.load(str(tiny_llama_dir)).logits(IDS)
    export_hf(src, tmp_path / "hf", dtype)
    export_gguf(src, tmp_path / "g" / "m.gguf", ftype)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.self_attn.q_proj.weight").dtype == getattr(torch, dtype)
    for path, kwargs in ((tmp_path / "hf", {}), (tmp_path / "g", {"gguf_file": "m.gguf"})):
        torch.testing.assert_close(hf_logits(path, **kwargs), ours, atol=atol, rtol=0)
    import gguf

    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(tmp_path / "g" / "m.gguf")).tensors}
    assert types["blk.0.attn_q.weight"] == ftype.upper() and types["blk.0.attn_norm.weight"] == "F32"


def test_the_gguf_tokenizer_encodes_like_the_original(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    export_gguf(load_source(str(tiny_llama_dir)), tmp_path / "m.gguf", "f16")
    original = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    from_gguf = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="m.gguf")
    text = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # ünïcode, 12345 <|im_end|>"
    assert from_gguf(text)["input_ids"] == original(text)["input_ids"]
    messages = [{"role": "user", "content": "Hi!"}]
    assert from_gguf.apply_chat_template(messages, tokenize=False) == original.apply_chat_template(messages,
                                                                                                   tokenize=False)
    assert (from_gguf.eos_token, from_gguf.bos_token) == (original.eos_token, original.bos_token)


@pytest.mark.parametrize("scaling", [RopeScaling("linear", 4.0), RopeScaling("llama3", 8.0, 32),
                                     RopeScaling("ntk", 2.0), RopeScaling("yarn", 4.0, 32)],
                         ids=["linear", "llama3", "ntk", "yarn"])
def test_rope_scalings_round_trip_through_gguf(tmp_path: Path, tiny_llama_dir: Path, scaling: RopeScaling) -> None:
    src = load_source(str(tiny_llama_dir))
    scaled = Source("scaled", src.config.with_(rope_scaling=scaling), src.state, src.tokenizer_dir)
    path = export_gguf(scaled, tmp_path / "s.gguf", "f32")
    config, state = load_checkpoint(ModelSource("s", "gguf", path), torch.float32, use_cache=False)
    plain = build_model(src.config, {**src.state})
    want = build_model(scaled.config, {**src.state})
    got = build_model(config, state)
    with torch.inference_mode():
        assert (want(IDS) - plain(IDS)).abs().max() > 1e-3  # the scaling changes the logits
        torch.testing.assert_close(got(IDS), want(IDS), atol=ATOL, rtol=0)


def test_what_the_formats_cannot_hold_is_refused(tmp_path: Path, tiny_llama_dir: Path) -> None:
    src = load_source(str(tiny_llama_dir))
    odd = Source("odd", src.config.with_(norm="layernorm"), src.state, None)
    with pytest.raises(ConvertError, match="norm 'layernorm'"):
        export_hf(odd, tmp_path / "hf")
    with pytest.raises(ConvertError, match="norm 'layernorm'"):
        export_gguf(odd, tmp_path / "m.gguf")
    with pytest.raises(ConvertError, match="no tokenizer files"):
        export_gguf(Source("bare", src.config, src.state, None), tmp_path / "m.gguf")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    result = runner.invoke(app, ["convert", "hf", str(tiny_llama_dir), "--out", str(tmp_path / "taken")])
    assert result.exit_code == 1 and "not an empty directory" in result.stderr
    assert (tmp_path / "taken" / "x").read_text() == "keep"
    result = runner.invoke(app, ["convert", "gguf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.gguf")])
    assert result.exit_code == 1 and result.stderr.startswith("error: unknown model")
