"""`ulm generate` through Typer's CliRunner on the tiny checkpoint: streamed text, options, stdin, and
one-line errors with non-zero exit codes.

Run: .venv/bin/python -m pytest tests/ulm/commands -q
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ulm
from ulm.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def greedy_text(tiny_llama_dir: Path) -> str:
    return ulm.load(tiny_llama_dir).generate("Once upon a time", temperature=0, max_tokens=6).text


def _run(*args: str, stdin: str | None = None) -> object:
    return runner.invoke(app, list(args), input=stdin)


def test_raw_greedy_generation_prints_the_api_text(tiny_llama_dir: Path, greedy_text: str) -> None:
    result = _run("generate", "--model", str(tiny_llama_dir), "--raw", "-t", "0", "-n", "6", "Once upon a time")
    assert result.exit_code == 0, result.output
    assert result.stdout == greedy_text + "\n"


def test_prompt_from_stdin_and_stats_on_stderr(tiny_llama_dir: Path, greedy_text: str) -> None:
    result = _run("generate", "-m", str(tiny_llama_dir), "--raw", "-t", "0", "-n", "6", "--stats", "-",
                  stdin="Once upon a time")
    assert result.exit_code == 0, result.output
    assert result.stdout == greedy_text + "\n"
    assert "prompt 4 tokens" in result.stderr and "6 generated" in result.stderr


def test_chat_mode_and_seeded_sampling_reproduce(tiny_llama_dir: Path) -> None:
    args = ("generate", "-m", str(tiny_llama_dir), "--system", "Be brief.", "-t", "1.0", "--top-p", "1",
            "--seed", "3", "-n", "8", "Hello")
    first, second = _run(*args), _run(*args)
    assert first.exit_code == 0 and first.stdout == second.stdout


def test_stop_string_is_not_printed(tiny_llama_dir: Path) -> None:
    sampling = ("--raw", "-t", "0.8", "--top-p", "1", "--seed", "1", "-n", "12")
    free = _run("generate", "-m", str(tiny_llama_dir), *sampling, "Hi")
    text = free.stdout[:-1]
    stop = text[len(text) // 2:][:2]
    cut = _run("generate", "-m", str(tiny_llama_dir), *sampling, "--stop", stop, "Hi")
    assert cut.exit_code == 0
    assert cut.stdout == text[: text.find(stop)] + "\n"


@pytest.mark.parametrize("args,message", [
    (["generate", "   "], "the prompt is empty"),
    (["generate", "-m", "/no/such/model", "hi"], "unknown model"),
    (["generate", "--raw", "--system", "x", "hi"], "--system needs --chat"),
])
def test_user_errors_are_one_line_and_exit_non_zero(args: list[str], message: str) -> None:
    result = _run(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_prompt_longer_than_the_context_is_a_one_line_error(tiny_llama_dir: Path) -> None:
    result = _run("generate", "-m", str(tiny_llama_dir), "--raw", "word " * 600)
    assert result.exit_code == 1
    assert "more than the context of 512" in result.stderr and result.stderr.count("\n") == 1


def test_bad_option_values_are_refused(tiny_llama_dir: Path) -> None:
    assert _run("generate", "-m", str(tiny_llama_dir), "-t", "-1", "hi").exit_code == 2  # typer range check
    result = _run("generate", "-m", str(tiny_llama_dir), "--top-p", "0", "hi")
    assert result.exit_code == 1 and "top_p" in result.stderr
    result = _run("generate", "-m", str(tiny_llama_dir), "--mode", "turbo", "hi")
    assert result.exit_code == 1 and "mode" in result.stderr


def test_corrupt_gguf_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    result = _run("generate", "-m", str(bad), "hi")
    assert result.exit_code == 1 and "broken.gguf" in result.stderr and "Traceback" not in result.output


@pytest.mark.integration
@pytest.mark.slow
def test_a_closed_pipe_ends_generation_quietly(tiny_llama_dir: Path, cb_home: Path) -> None:
    env = {**os.environ, "CB_HOME": str(cb_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ulm", "generate", "-m", str(tiny_llama_dir), "--raw", "-t", "1",
                             "--top-p", "1", "-n", "400", "hello"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1)  # the reader takes one byte and goes away, like `| head -c 1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert err == b""
