"""Start-up stays light: `cb --help` and the command modules import no HTTP, prompt or Redis library, and
the root routes bare questions to `ask` and nothing-on-a-pipe to `ask` (which then explains).

Run: .venv/bin/python -m pytest tests/cb/test_startup.py -q
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cb.cli import app

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("httpx", "prompt_toolkit", "redis", "torch", "transformers", "rich.markdown", "rich.live")


def _modules_after_help(*args: str) -> set[str]:
    code = (f"import sys, runpy\nsys.argv = ['cb', *{list(args)!r}]\n"
            "try:\n    runpy.run_module('cb', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(' '.join(sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "Usage" in out.stdout, out.stdout + out.stderr
    return set(out.stderr.split())


def test_help_imports_no_heavy_library() -> None:
    for args in (["--help"], ["ask", "--help"], ["chat", "--help"], ["session", "--help"]):
        mods = _modules_after_help(*args)
        assert not [m for m in HEAVY if m in mods], args


def test_help_documents_exit_codes_and_usage_forms() -> None:
    out = CliRunner().invoke(app, ["--help"]).output
    for needle in ('cb "why does this fail?"', "git diff | cb", "Exit codes:", "3    edits proposed and not applied"):
        assert needle in out


def test_unknown_first_word_is_a_question() -> None:
    result = CliRunner().invoke(app, ["--fresh"], input="")
    # `cb --fresh` with nothing piped: routed to ask, which explains what it needs
    assert result.exit_code == 2 and "no question given" in result.stderr
