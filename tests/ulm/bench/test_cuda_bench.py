"""`ulm bench --device cuda` on the CPU side: the table it renders from a run's figures (ratios to HF's static
cache, rows that failed), and the command's refusals where no GPU or no such shape is.

Run: .venv/bin/python -m pytest tests/ulm/bench/test_cuda_bench.py -q
"""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from ulm.bench.cuda import render_cuda
from ulm.cli import app

FIGURES = {"decode_tok_s": 700.0, "prefill_tok_s": 120000.0, "batch8_tok_s": 2500.0, "batch32_tok_s": 9000.0,
           "peak_gpu_mib": 400.0}


def test_the_table_gives_each_row_its_ratio_to_hfs_static_cache_and_names_failed_rows() -> None:
    results = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "smollm2-135m": {
        "new_tokens": 128, "shared_greedy_tokens_with_ulm_bf16": {"HF static cache": 128},
        "rows": {"ulm bf16": FIGURES,
                 "ulm int4": {**FIGURES, "decode_tok_s": 350.0, "top1_agreement": 0.5, "logit_error": 0.25},
                 "ulm int8 + compile": {"error": "RuntimeError: no kernel"},
                 "HF static cache": {**FIGURES, "decode_tok_s": 350.0}}}}
    table = render_cuda(results)
    assert "device: NVIDIA H100 80GB HBM3" in table
    assert "| ulm bf16 | 700 | 120,000 | 2,500 | 9,000 | 400 | 2.00× | - | - |" in table
    assert "| ulm int4 | 350 | 120,000 | 2,500 | 9,000 | 400 | 1.00× | 50.0% | 0.250 |" in table
    assert "| ulm int8 + compile | error: RuntimeError: no kernel |" in table
    assert "greedy tokens shared with µLM bf16: HF static cache 128" in table
    assert "qwen2.5-coder-1.5b" not in table  # a config the run did not measure has no table


def test_the_command_refuses_an_unknown_shape_and_a_machine_without_cuda() -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["bench", "--device", "cuda", "--model", "llama-70b"])
    assert bad.exit_code == 2 and "smollm2-135m, qwen2.5-coder-1.5b" in bad.output
    wrong = runner.invoke(app, ["bench", "--device", "tpu"])
    assert wrong.exit_code == 2 and "cpu or cuda" in wrong.output
    if not torch.cuda.is_available():
        none = runner.invoke(app, ["bench", "--device", "cuda", "--model", "smollm2-135m"])
        assert none.exit_code == 1 and "sees no CUDA device" in none.output
