"""µLM's CUDA path where a GPU is: captured decode steps equal the eager step, the engine on CUDA decodes as
the cache-free forward does, the weight-only linears stay close to bf16, and `ulm serve --device cuda`
answers concurrent streaming requests. Without CUDA (CI) these are skipped; the CPU tests beside this file
cover the code they share.

Run (on a GPU machine): python -m pytest tests/ulm/cuda -q
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from tests.support.redis_server import wait_until
from ulm.config import ModelConfig
from ulm.cuda.graphs import GraphDecoder, decode_step
from ulm.cuda.weight_only import CudaInt4Linear, CudaInt8Linear
from ulm.engine.backend import UlmBackend
from ulm.engine.types import Request
from ulm.engine.worker import Engine
from ulm.kv_cache import KVCache
from ulm.model import Transformer
from ulm.sampling import SamplingParams

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIG = ModelConfig(vocab_size=512, dim=128, n_layers=3, n_heads=8, n_kv_heads=2, hidden_dim=256,
                     max_seq_len=512, qkv_bias=True, tie_embeddings=True)


def _net(dtype: torch.dtype = torch.float32) -> Transformer:
    torch.manual_seed(0)
    net = Transformer(CONFIG).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.08)  # logits that differ visibly between tokens
    net.rope.rebuild(dtype, "cuda")
    return net.to(device="cuda", dtype=dtype)


@torch.inference_mode()
def test_graph_steps_equal_the_eager_step_for_every_bucket() -> None:
    net = _net()
    graphed, eager = KVCache(CONFIG, 9, 64, device="cuda"), KVCache(CONFIG, 9, 64, device="cuda")
    prompts = [[3, 4, 5, 6], [7, 8], [9, 10, 11], [12], [13, 14], [15]]
    for cache in (graphed, eager):
        for row, p in enumerate(prompts):
            net(torch.tensor([p], device="cuda"), cache=cache, start=torch.tensor([0]), rows=torch.tensor([row]))
            cache.commit([row], [0], [len(p)])
    decoder = GraphDecoder(net, graphed)
    for rows in ([0], [1, 2, 3], [0, 1, 2, 3, 4, 5]):  # buckets 1, 4 (one pad row), 8 (two)
        ids = [20 + r for r in rows]
        pos = [len(prompts[r]) for r in rows]
        got = decoder.step(ids, rows, pos).clone()
        want = decode_step(net, eager, torch.tensor([ids, rows, pos], device="cuda"), keys=64)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        for r, p in zip(rows, pos, strict=True):
            prompts[r].append(20 + r)
            torch.testing.assert_close(graphed.k[:, r, :, p], eager.k[:, r, :, p])
    assert decoder.captured == [(1, 64), (4, 64), (8, 64)]
    with pytest.raises(ValueError, match="positions"):
        decoder.step([1], [0], [64])


@torch.inference_mode()
def _greedy_without_cache(net: Transformer, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(net(torch.tensor([ids], device="cuda"))[0, -1].argmax()))
    return ids[len(prompt):]


def test_the_engine_on_cuda_decodes_as_the_cache_free_forward(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tests.support.small_tokenizer import save_small_bpe

    tokenizer = AutoTokenizer.from_pretrained(save_small_bpe(tmp_path, ["def f(x):\n    return x + 1\n"] * 50))
    net = _net()
    backend = UlmBackend(net, tokenizer, "tiny-cuda")
    engine = Engine(backend, parallel=3, n_ctx=128)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]
    requests = [Request(p, 24, SamplingParams(temperature=0), (), frozenset()) for p in prompts]
    tokens: dict[int, list[int]] = {i: [] for i in range(len(prompts))}
    for i, event in engine.generate(requests):
        if event.token_id is not None:
            tokens[i].append(event.token_id)
    for i, p in enumerate(prompts):
        assert tokens[i] == _greedy_without_cache(net, p, 24)
    assert backend.graphs.captured, "decode steps ran through CUDA graphs"


@torch.inference_mode()
@pytest.mark.parametrize("kind", [CudaInt8Linear, CudaInt4Linear])
def test_weight_only_linears_stay_close_to_bf16(kind: type) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(1536, 512, bias=True).to(device="cuda", dtype=torch.bfloat16)
    q = kind.quantize(linear)
    for rows in (1, 64):
        x = torch.randn(rows, 1536, device="cuda", dtype=torch.bfloat16)
        want, got = linear(x).float(), q(x).float()
        rel = (got - want).norm() / want.norm()
        assert rel < (0.01 if kind is CudaInt8Linear else 0.12), f"{kind.__name__} at {rows} rows: {rel:.4f}"


def _tiny_hf_dir(path: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.support.small_tokenizer import save_small_bpe

    config = AutoConfig.for_model("qwen2", vocab_size=512, hidden_size=128, intermediate_size=256,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=512, tie_word_embeddings=True)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(path))
    save_small_bpe(path, ["def f(x):\n    return x + 1\n"] * 50)
    return path


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _post(url: str, body: dict[str, object]) -> list[str]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return [line.decode() for line in resp if line.strip()]


def test_ulm_serve_on_cuda_streams_concurrent_requests(tmp_path: Path) -> None:
    model = _tiny_hf_dir(tmp_path / "model")
    proc = subprocess.Popen([sys.executable, "-m", "ulm", "serve", "--model", str(model), "--device", "cuda",
                             "--mode", "fast", "--port", "0", "--parallel", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        port, said = None, []
        for line in proc.stdout:
            said.append(line)
            if "listening on" in line:
                port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
                break
        assert port is not None, "the server never said where it listens:\n" + "".join(said)
        assert wait_until(lambda: _ready(port), 120), "the server never became ready"
        url = f"http://127.0.0.1:{port}/v1/completions"
        out: dict[int, list[str]] = {}

        def ask(i: int) -> None:
            out[i] = _post(url, {"prompt": f"def f{i}(x):", "max_tokens": 16, "temperature": 0, "stream": True,
                                 "stream_options": {"include_usage": True}})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i in range(2):
            assert out[i][-1] == "data: [DONE]"
            usage = [json.loads(e[6:]) for e in out[i][:-1] if '"usage"' in e and '"completion_tokens"' in e]
            assert usage and 1 <= usage[-1]["usage"]["completion_tokens"] <= 16
    finally:
        proc.terminate()
        proc.wait(30)
