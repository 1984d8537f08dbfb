"""Start-up stays light: `cb --help` imports no HTTP, prompt or Redis library, a piped one-shot imports its
own command module and the stdlib's HTTP client only (no httpx, pydantic, rich, click, tomlkit, agentshell,
the other commands, or the edit machinery when nothing is proposed), and the root routes bare questions to
`ask`. `--version`, printing a completion script and answering a Tab cost no more than that.

Run: .venv/bin/python -m pytest tests/cb/test_startup.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cb.cli import app
from tests.cb.scripted_server import ScriptedServer

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("httpx", "prompt_toolkit", "redis", "torch", "transformers", "rich.markdown", "rich.live", "tomlkit")


def _run_module(program: str, *args: str, **env: str) -> tuple[str, set[str]]:
    """Run `python -m program args` in a fresh interpreter: its stdout and the modules it imported."""
    code = (f"import sys, runpy\nsys.argv = [{program!r}, *{list(args)!r}]\n"
            f"try:\n    runpy.run_module({program!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('MODULES ' + ' '.join(sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, **env})
    return out.stdout, set(out.stderr.split("MODULES ")[-1].split())


def _modules_after_help(*args: str) -> set[str]:
    stdout, mods = _run_module("cb", *args)
    assert "Usage" in stdout, stdout
    return mods


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


def test_bad_option_values_are_usage_errors_not_tracebacks() -> None:
    result = CliRunner().invoke(app, ["ask", "q", "--max-tokens", "many"])
    assert result.exit_code == 2 and "'many' is not a valid integer" in result.output
    result = CliRunner().invoke(app, ["ask", "q", "-t", "hot"])
    assert result.exit_code == 2 and "'hot' is not a valid number" in result.output


def test_one_shot_imports_only_what_it_needs_when_piped(scripted: ScriptedServer, project: Path) -> None:
    code = ("import sys, runpy\nsys.argv = ['cb', 'hi', '--max-tokens', '3', '--fresh']\n"
            "try:\n    runpy.run_module('cb', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
            "sys.stderr.write('MODULES ' + ' '.join(sys.modules))\n")
    env = {**os.environ, "CB_BASE_URL": scripted.base_url, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project, env=env,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.stdout == "ok\n", out.stderr
    mods = set(out.stderr.split("MODULES ")[-1].split())
    assert "http.client" in mods
    assert not {"httpx", "pydantic", "rich", "click", "prompt_toolkit", "redis", "agentshell.client"} & mods
    assert not {"tools.apply", "tools.plan", "tools.journal"} & mods  # the answer proposed no edit
    assert {m for m in mods if m.startswith("cb.commands.")} == {"cb.commands.oneshot", "cb.commands.common"}


def test_version_completion_scripts_and_tab_answers_import_nothing_heavy() -> None:
    for args, env, expected in ((["--version"], {}, "cb "), (["completion", "bash"], {}, "complete -o default"),
                                (["ses"], {"_CB_COMPLETE": "bash"}, "session")):
        stdout, mods = _run_module("cb", *args, **env)
        assert expected in stdout, (args, stdout)
        assert not [m for m in (*HEAVY, "pydantic", "rich") if m in mods], args
        if env:  # a bash Tab on a command name loads no command module
            assert not [m for m in mods if m.startswith("cb.commands.")]
    stdout, mods = _run_module("ulm", "--version")
    assert stdout.startswith("ulm ") and "torch" not in mods  # torch's version comes from its metadata
