"""`ulm chat`: stdin lines as messages (no TTY) through CliRunner; the interactive REPL in a real PTY
(Ctrl-C stops an answer, Ctrl-D exits).

Run: .venv/bin/python -m pytest tests/ulm/commands/test_chat_cmd.py -q
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ulm
from ulm.cli import app

runner = CliRunner()


def test_each_stdin_line_is_a_turn_and_history_is_kept(tiny_llama_dir: Path) -> None:
    result = runner.invoke(app, ["chat", "-m", str(tiny_llama_dir), "-t", "0", "-n", "5", "--stats"],
                           input="Hello\n\nHow are you?\n")
    assert result.exit_code == 0, result.output
    answers = result.stdout.splitlines()
    # the answers equal the API's for the same conversation
    model = ulm.load(tiny_llama_dir)
    first = model.generate([{"role": "user", "content": "Hello"}], temperature=0, max_tokens=5)
    second = model.generate([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": first.text},
                             {"role": "user", "content": "How are you?"}], temperature=0, max_tokens=5)
    assert result.stdout == first.text + "\n" + second.text + "\n", answers
    stats = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(stats) == 2 and "(0 cached)" in stats[0] and "(0 cached)" not in stats[1]  # turn 2 reused turn 1


def test_reset_forgets_the_conversation(tiny_llama_dir: Path) -> None:
    result = runner.invoke(app, ["chat", "-m", str(tiny_llama_dir), "-t", "0", "-n", "3"],
                           input="Hello\n/reset\nHello\n/exit\nnever read\n")
    assert result.exit_code == 0
    first, second = result.stdout.splitlines()
    assert first == second and "forgotten" in result.stderr


def test_a_too_long_message_is_reported_and_the_chat_goes_on(tiny_llama_dir: Path) -> None:
    result = runner.invoke(app, ["chat", "-m", str(tiny_llama_dir), "-t", "0", "-n", "3"],
                           input="word " * 600 + "\nHello\n")
    assert result.exit_code == 0
    assert "context" in result.stderr and len(result.stdout.splitlines()) == 1


def test_bad_options_fail_before_reading_input(tiny_llama_dir: Path) -> None:
    result = runner.invoke(app, ["chat", "-m", str(tiny_llama_dir), "--top-p", "2"], input="Hello\n")
    assert result.exit_code == 1 and "top_p" in result.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_interactive_ctrl_c_stops_the_answer_and_ctrl_d_exits(tiny_llama_dir: Path, cb_home: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    env = {**os.environ, "CB_HOME": str(cb_home), "HF_HUB_OFFLINE": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "ulm", "chat", "-m", str(tiny_llama_dir), "-n", "100000",
                                           "-t", "1.0", "--seed", "1"],
                          env=env, encoding="utf-8", timeout=60)
    try:
        child.expect_exact(">>> ")
        child.sendline("Tell me everything")
        child.expect_exact("Tell me everything\r\n")  # the terminal's echo of the line
        child.expect(r"\S")  # the answer has started streaming
        child.sendintr()
        child.expect_exact("[stopped]")
        child.expect_exact(">>> ")  # the chat goes on
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
