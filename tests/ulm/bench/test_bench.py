"""`ulm bench`: the real command end to end on a tiny HF checkpoint (every engine in its own process), the
report's table and ratios, option errors, and llama.cpp on the embedded GGUF when llama-cpp-python is there.

Run: .venv/bin/python -m pytest tests/ulm/bench -q
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ulm.bench.report import ratio, render
from ulm.bench.texts import take
from ulm.cli import app

FIELDS = ("load_s", "import_s", "prefill_tok_s", "decode_tok_s", "ttft_ms", "peak_rss_mib")


def run_bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ulm", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer_dir: Path) -> dict[str, dict[str, Any]]:
    from tests.support.checkpoints import save_tiny_hf

    # a context longer than the 512-token prefill: µLM's engine leaves a prompt room for a token
    tiny = save_tiny_hf(tmp_path_factory.mktemp("tiny_llama_1k"), "llama", tokenizer_dir=smollm2_tokenizer_dir,
                        max_position_embeddings=1024)
    proc = run_bench("--model", str(tiny), "--engines", "ulm,hf,llama_cpp", "--repeats", "1",
                     "--new-tokens", "4", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.integration
def test_json_has_every_engine_with_its_figures(tiny_results: dict[str, dict[str, Any]]) -> None:
    assert list(tiny_results) == ["ulm", "ulm_exact", "hf", "hf_fp32", "llama_cpp"]
    for name in ("ulm", "ulm_exact", "hf", "hf_fp32"):
        figures = tiny_results[name]
        assert all(figures[f] > 0 for f in FIELDS), (name, figures)
    assert 0.0 <= tiny_results["ulm"]["top1_agreement"] <= 1.0
    assert "top1_agreement" not in tiny_results["ulm_exact"]
    assert "GGUF" in tiny_results["llama_cpp"]["error"]  # an HF dir: llama.cpp cannot read it


@pytest.mark.slow
@pytest.mark.integration
def test_table_shows_every_engine_and_says_what_did_not_run(tiny_results: dict[str, dict[str, Any]]) -> None:
    text = render(tiny_results, model="tiny", threads=2, repeats=1, new_tokens=4)
    rows = [line.split("  ")[0] for line in text.splitlines()]
    for label in ("µLM fast (int4)", "µLM exact (fp32)", "HF transformers bf16", "HF transformers fp32"):
        assert rows.count(label) == (1 if label.startswith("µLM fast") else 2)  # figures row (+ ratios row)
    assert "not run:" in text and "llama_cpp: llama.cpp reads GGUF files only" in text
    assert "medians of 1 runs, engines interleaved" in text and "top-1 agreement" in text


def test_ratios_read_greater_than_one_when_ulm_is_better() -> None:
    assert ratio(100.0, 50.0, higher_is_better=True) == 2.0  # twice the tokens/s
    assert ratio(0.5, 2.0, higher_is_better=False) == 4.0  # a quarter of the load time
    results = {"ulm": {"load_s": 1.0, "prefill_tok_s": 800.0, "decode_tok_s": 120.0, "ttft_ms": 50.0,
                       "peak_rss_mib": 300.0},
               "llama_cpp": {"load_s": 0.5, "prefill_tok_s": 200.0, "decode_tok_s": 100.0, "ttft_ms": 100.0,
                             "peak_rss_mib": 300.0}}
    ratios_row = render(results, model="m", threads=2, repeats=3, new_tokens=128).splitlines()[-1]
    assert ratios_row.split()[-5:] == ["0.50×", "4.00×", "1.20×", "2.00×", "1.00×"]


def test_take_repeats_short_texts_to_the_asked_length() -> None:
    assert take([1, 2, 3], 7) == [1, 2, 3, 1, 2, 3, 1]
    assert take(list(range(10)), 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        take([], 3)


def test_unknown_engines_are_refused_with_the_choices() -> None:
    result = CliRunner().invoke(app, ["bench", "--engines", "ulm,vllm"])
    assert result.exit_code == 2
    assert "vllm" in result.output and "llama_cpp" in result.output


def test_help_teaches_the_options_and_examples() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for word in ("--engines", "--json", "--threads", "--repeats", "llama-cpp-python", "ulm bench --engines"):
        assert word in result.output


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_llama_cpp_runs_the_embedded_gguf() -> None:
    proc = run_bench("--engines", "llama_cpp", "--repeats", "1", "--new-tokens", "4", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout)["llama_cpp"]
    assert all(figures[f] > 0 for f in FIELDS), figures


def test_rounds_combine_into_medians_and_the_first_error() -> None:
    from ulm.bench.run import combine

    runs = [{"load_s": 1.0, "decode_tok_s": 90.0, "top1_agreement": 0.97}, {"load_s": 3.0, "decode_tok_s": 80.0},
            {"load_s": 2.0, "decode_tok_s": 100.0}]
    assert combine(runs) == {"load_s": 2.0, "decode_tok_s": 90.0, "top1_agreement": 0.97}
    assert combine([*runs, {"error": "llama-cpp-python is not installed"}]) == {
        "error": "llama-cpp-python is not installed"}
