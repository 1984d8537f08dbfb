"""The conventions clients bring from llama.cpp, vLLM and OpenAI, over a real `ulm serve`: --alias, CORS (off by
default; a preflight), llama.cpp's /props and /slots, /v1/embeddings against HF's last hidden state,
repetition_penalty against the in-process engine, and --log-file rotation.

Run: .venv/bin/python -m pytest tests/ulm/server/test_conventions.py -q
"""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ulm.server.conftest import BASE_ARGS
from tests.ulm.server.harness import API_KEY, Server, sse_events, start_server, wait_for

pytestmark = pytest.mark.integration

ALIAS = "team-model"
ORIGIN = "http://app.example"
CHAT = "/v1/chat/completions"
LOG_MAX_BYTES = 4096
LOG_BACKUPS = 2


@pytest.fixture(scope="module")
def conv_server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared setup with an alias, two CORS origins and a small rotated log file."""
    logs = tmp_path_factory.mktemp("conv")
    srv = start_server(["--model", str(tiny_llama_dir), *BASE_ARGS, "--alias", ALIAS, "--cors-origin", ORIGIN,
                        "--cors-origin", "https://other.example", "--log-file", str(logs / "server.log"),
                        "--log-max-bytes", str(LOG_MAX_BYTES), "--log-backups", str(LOG_BACKUPS)],
                       logs / "stderr.log", api_key=API_KEY)
    yield srv
    srv.stop()


def chat(prompt: str, **kwargs: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": 8, "temperature": 0, **kwargs}


# -- --alias ---------------------------------------------------------------------------------------------------


def test_alias_is_the_served_name_in_models_and_answers(conv_server: Server) -> None:
    with conv_server.client() as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == [ALIAS]
        whole = c.post(CHAT, json=chat("hi", model=ALIAS))
        assert whole.status_code == 200 and whole.json()["model"] == ALIAS
        chunks = sse_events(c.post(CHAT, json=chat("hi", model=ALIAS, stream=True)).text)
        assert {e["model"] for e in chunks[:-1]} == {ALIAS}
        other = c.post("/v1/completions", json={"prompt": "x", "model": "smollm2-135m", "max_tokens": 1})
        assert other.status_code == 404 and f"serves '{ALIAS}'" in other.json()["error"]["message"]
        assert c.get("/props").json()["model_alias"] == ALIAS


def test_an_empty_alias_is_refused_before_loading(tiny_llama_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ulm", "serve", "--model", str(tiny_llama_dir), "--alias", " "],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--alias must be" in result.stderr and "Traceback" not in result.stderr


# -- CORS ------------------------------------------------------------------------------------------------------


def test_cors_preflight_allows_a_configured_origin_only(conv_server: Server) -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    with httpx.Client(base_url=conv_server.base, timeout=10) as c:  # no key: browsers send none in a preflight
        ok = c.options(CHAT, headers={"Origin": ORIGIN, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        refused = c.options(CHAT, headers={"Origin": "http://evil.example", **preflight})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        unauthorised = c.get("/v1/models", headers={"Origin": ORIGIN})  # the browser may read the 401
        assert unauthorised.status_code == 401 and unauthorised.headers["access-control-allow-origin"] == ORIGIN
    with conv_server.client() as c:
        answer = c.post(CHAT, json=chat("hi"), headers={"Origin": "https://other.example"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://other.example"
        assert "access-control-allow-origin" not in c.get("/v1/models", headers={"Origin": "http://evil.example"}).headers


def test_no_cors_headers_at_all_without_the_flag(server: Server) -> None:
    with server.client() as c:
        preflight = c.options(CHAT, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        answer = c.get("/v1/models", headers={"Origin": ORIGIN})
    assert answer.status_code == 200
    for resp in (preflight, answer):
        assert not [h for h in resp.headers if h.lower().startswith("access-control-")]


# -- /props and /slots -----------------------------------------------------------------------------------------


def test_props_has_llama_cpp_shape_and_says_it_constrains_decoding(server: Server, tiny_llama_dir: Path) -> None:
    with server.client() as c:
        props = c.get("/props").json()
        assert httpx.get(server.base + "/props", timeout=10).status_code == 401  # behind the key, as llama.cpp's
    assert props["grammar"] is True  # cb.backend reads it to send its edit grammar
    assert props["response_format"] is True and props["tools"] is True and props["logprobs"] is True
    assert props["total_slots"] == 2
    settings = props["default_generation_settings"]
    assert settings["n_ctx"] == 256
    params = settings["params"]
    assert params["max_tokens"] == 64 and params["temperature"] == 1.0 and params["repeat_penalty"] == 1.0
    assert params["samplers"] == ["penalties", "temperature", "top_k", "top_p", "min_p"]
    assert props["chat_template"].startswith("{%") or "{{" in props["chat_template"]
    assert props["chat_template_caps"] == {"supports_system_role": True, "supports_tools": False,
                                           "supports_tool_calls": False}
    assert Path(props["model_path"]).resolve() == tiny_llama_dir.resolve()
    assert props["modalities"] == {"vision": False, "audio": False}
    assert props["build_info"].startswith("ulm ")


def test_slots_show_idle_and_processing_slots(slow_server: Server) -> None:
    with slow_server.client() as c:
        idle = c.get("/slots").json()
        assert [s["id"] for s in idle] == [0, 1]
        assert all(s["is_processing"] is False and s["n_ctx"] == 256 and "params" not in s for s in idle)
        assert c.get("/slots", params={"fail_on_no_slot": "1"}).status_code == 200
        assert httpx.get(slow_server.base + "/slots", timeout=10).status_code == 401

        body = chat("Tell me a long story.", max_tokens=60, temperature=0.5, repetition_penalty=1.2)
        done = threading.Event()

        def run() -> None:
            with slow_server.client() as c2:
                c2.post(CHAT, json=body)
            done.set()

        threading.Thread(target=run, daemon=True).start()
        busy = wait_for(lambda: next((s for s in c.get("/slots").json() if s["is_processing"]
                                      and s["next_token"]["n_decoded"] > 0), None), timeout=30)
        assert busy["params"]["temperature"] == 0.5 and busy["params"]["repeat_penalty"] == pytest.approx(1.2)
        assert busy["n_prompt_tokens"] > 0 and busy["n_prompt_tokens_processed"] + busy["n_prompt_tokens_cache"] \
            == busy["n_prompt_tokens"]
        assert busy["next_token"]["n_remain"] + busy["next_token"]["n_decoded"] == 60
        assert done.wait(60)
        after = next(s for s in c.get("/slots").json() if s["id"] == busy["id"])
        assert after["is_processing"] is False and after["n_past"] >= busy["n_prompt_tokens"]


# -- /v1/embeddings --------------------------------------------------------------------------------------------


def _hf_embedding(model_dir: Path, ids: list[int]) -> list[float]:
    """The oracle: HF transformers' last_hidden_state of the same checkpoint, mean-pooled and L2-normalised."""
    import torch
    from transformers import AutoModel

    net = AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        hidden = net(torch.tensor([ids])).last_hidden_state[0]  # [T, D]
    return torch.nn.functional.normalize(hidden.mean(dim=0), dim=0).tolist()


def test_embeddings_are_the_mean_pooled_last_hidden_state(conv_server: Server, tiny_llama_dir: Path) -> None:
    texts = ["def add(a, b):\n    return a + b", "The capital of France is Paris."]
    with conv_server.client() as c:
        ids = [c.post("/tokenize", json={"content": t}).json()["tokens"] for t in texts]
        reply = c.post("/v1/embeddings", json={"input": texts, "model": ALIAS})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        one = c.post("/v1/embeddings", json={"input": texts[0]}).json()
        by_ids = c.post("/v1/embeddings", json={"input": ids}).json()
        packed = c.post("/v1/embeddings", json={"input": ids[1], "encoding_format": "base64"}).json()
    assert body["object"] == "list" and body["model"] == ALIAS
    assert [d["index"] for d in body["data"]] == [0, 1] and all(d["object"] == "embedding" for d in body["data"])
    n = sum(len(i) for i in ids)
    assert body["usage"] == {"prompt_tokens": n, "total_tokens": n}
    for got, token_ids in zip(body["data"], ids, strict=True):
        assert got["embedding"] == pytest.approx(_hf_embedding(tiny_llama_dir, token_ids), abs=1e-4)
    assert one["data"][0]["embedding"] == body["data"][0]["embedding"]
    assert [d["embedding"] for d in by_ids["data"]] == [d["embedding"] for d in body["data"]]
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(body["data"][1]["embedding"], abs=1e-7)


def test_embeddings_refuse_bad_input_with_a_400(conv_server: Server) -> None:
    with conv_server.client() as c:
        for bad in ({"input": ""}, {"input": []}, {"input": [[]]}, {"input": "x", "encoding_format": "hex"},
                    {"input": [10**9]}, {"input": [1] * 300}):
            reply = c.post("/v1/embeddings", json=bad)
            assert reply.status_code == 400, (bad, reply.text)
            assert reply.json()["error"]["message"]
        assert c.post("/v1/embeddings", json={"input": "x", "model": "other"}).status_code == 404


# -- repetition_penalty ----------------------------------------------------------------------------------------


def test_repetition_penalty_over_http_is_the_engine_sampler(server: Server, tiny_llama_dir: Path) -> None:
    import ulm

    prompt = list(range(100, 140))
    body = {"prompt": prompt, "max_tokens": 24, "temperature": 0}
    with server.client() as c:
        plain = c.post("/v1/completions", json=body).json()["choices"][0]["text"]
        penalised = c.post("/v1/completions", json={**body, "repetition_penalty": 1.5}).json()["choices"][0]["text"]
        llama_spelling = c.post("/v1/completions", json={**body, "repeat_penalty": 1.5}).json()["choices"][0]["text"]
        refused = c.post("/v1/completions", json={**body, "repetition_penalty": 0.001})
    model = ulm.load(str(tiny_llama_dir))
    assert penalised == model.generate(prompt, max_tokens=24, temperature=0, repetition_penalty=1.5).text
    assert plain == model.generate(prompt, max_tokens=24, temperature=0).text
    assert penalised != plain and llama_spelling == penalised
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "repetition_penalty"


# -- --log-file ------------------------------------------------------------------------------------------------


def test_log_file_is_rotated_by_size_keeping_n_files(conv_server: Server) -> None:
    log = Path(conv_server.proc.args[conv_server.proc.args.index("--log-file") + 1])
    with conv_server.client() as c:
        for _ in range(300):  # an access-log line each: ~12 KB, three times the size limit
            assert c.get("/health").status_code == 200
    files = sorted(p.name for p in log.parent.glob("server.log*"))
    assert files == ["server.log", "server.log.1", "server.log.2"]
    for name in files:
        assert (log.parent / name).stat().st_size <= LOG_MAX_BYTES
    assert "GET /health 200" in log.read_text()
    assert "listening on" not in log.read_text()  # stdout's first line stays on stdout, for whoever started it
