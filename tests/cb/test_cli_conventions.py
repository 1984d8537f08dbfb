"""The habits people bring from llm, Aider, gptme and Claude Code, each through a real `cb` (or `ulm`,
`agentshell`) process: --version, OPENAI_* fallbacks, -s/--system, --session and -c/--continue, model aliases,
AGENTS.md / CONVENTIONS.md in the context, shell completion that bash sources, `cb session search`.

Against the scripted server (tests/cb/scripted_server.py), which records what cb sent.

Run: .venv/bin/python -m pytest tests/cb/test_cli_conventions.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from cb import config, paths, session
from tests.cb.scripted_server import ScriptedServer

ROOT = Path(__file__).resolve().parents[2]


def run(program: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m program args` with this checkout's code, stdin not a terminal."""
    return subprocess.run([sys.executable, "-m", program, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def cb(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run("cb", *args, cwd=cwd, **env)


def _system(scripted: ScriptedServer, i: int = -1) -> str:
    return scripted.requests[i]["body"]["messages"][0]["content"]


def test_version_flags_print_the_package_version_and_exit_0(project: Path) -> None:
    version = metadata.version("cb")
    for program in ("cb", "agentshell"):
        out = run(program, "--version", cwd=project)
        assert (out.returncode, out.stdout) == (0, f"{program} {version}\n"), out.stderr
    out = run("ulm", "--version", cwd=project)
    assert (out.returncode, out.stdout) == (0, f"ulm {version} (torch {metadata.version('torch')})\n"), out.stderr
    assert cb("version", cwd=project).stdout == f"cb {version}\n"


def test_openai_env_vars_reach_the_server_below_the_cb_ones(scripted: ScriptedServer, project: Path) -> None:
    env = {"OPENAI_BASE_URL": scripted.base_url, "OPENAI_API_KEY": "sk-openai"}
    out = cb("hi", cwd=project, **env)
    assert out.returncode == 0, out.stderr
    assert scripted.requests[-1]["headers"]["Authorization"] == "Bearer sk-openai"
    out = cb("hi", cwd=project, CB_API_KEY="sk-cb", **env)
    assert out.returncode == 0, out.stderr
    assert scripted.requests[-1]["headers"]["Authorization"] == "Bearer sk-cb"
    shown = cb("config", "show", cwd=project, **env).stdout
    assert "(env OPENAI_API_KEY)" in shown and "(env OPENAI_BASE_URL)" in shown


def test_system_flag_adds_instructions_for_that_request_only(scripted: ScriptedServer, project: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_BASE_URL", scripted.base_url)
    (project / ".cb.toml").write_text('system_prompt = "Answer in English."\n')
    assert cb("-s", "Answer in French.", "hi", cwd=project).returncode == 0
    assert "Answer in French." in _system(scripted) and "Answer in English." not in _system(scripted)
    assert cb("--system=Be terse.", "hi", cwd=project).returncode == 0
    assert "Be terse." in _system(scripted)
    assert cb("hi", cwd=project).returncode == 0
    assert "Answer in English." in _system(scripted) and "French" not in _system(scripted)


def test_session_flag_answers_in_that_session_for_one_run(scripted: ScriptedServer, project: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_BASE_URL", scripted.base_url)
    review = session.new(project, "review")
    review.append("user", "earlier review question")
    review.append("assistant", "earlier review answer")
    current = session.new(project)
    out = cb("--session", "review", "next?", cwd=project)
    assert out.returncode == 0, out.stderr
    sent = [m["content"] for m in scripted.requests[-1]["body"]["messages"][1:]]
    assert sent == ["earlier review question", "earlier review answer", "next?"]
    assert session.load(review.id).messages()[-2:] == [{"role": "user", "content": "next?"},
                                                       {"role": "assistant", "content": "ok"}]
    assert session.current(project).id == current.id and current.messages() == []  # current stays
    missing = cb("--session", "nope", "q", cwd=project)
    assert missing.returncode == 1 and "no session 'nope'" in missing.stderr
    both = cb("--session", "review", "-c", "q", cwd=project)
    assert both.returncode == 2 and "give one" in both.stderr


def test_continue_resumes_the_latest_conversation_and_makes_it_current(scripted: ScriptedServer, project: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_BASE_URL", scripted.base_url)
    nothing = cb("-c", "q", cwd=project)
    assert nothing.returncode == 1 and "no conversation to continue" in nothing.stderr
    older = session.new(project, "older")
    older.append("user", "old question")
    talked = session.new(project, "talked")
    talked.append("user", "latest question")
    os.utime(older.conversation_file, (1, 1))
    session.new(project, "empty")  # newest, but no conversation: not what -c continues
    out = cb("--continue", "and then?", cwd=project)
    assert out.returncode == 0, out.stderr
    assert [m["content"] for m in scripted.requests[-1]["body"]["messages"][1:]] == ["latest question", "and then?"]
    assert session.current(project).id == talked.id


def test_model_aliases_resolve_in_flags_env_and_config_and_cb_models_lists_them(scripted: ScriptedServer,
                                                                                project: Path) -> None:
    env = {"CB_BASE_URL": scripted.base_url}
    added = cb("models", "alias", "fast", "scripted", cwd=project, **env)
    assert added.returncode == 0 and added.stdout.startswith("fast = scripted"), added.stderr
    assert cb("models", "alias", "big", "some-big-model", cwd=project, **env).returncode == 0
    assert cb("-m", "fast", "hi", cwd=project, **env).returncode == 0
    assert scripted.requests[-1]["body"]["model"] == "scripted"
    assert cb("hi", cwd=project, CB_MODEL="big", **env).returncode == 0
    assert scripted.requests[-1]["body"]["model"] == "some-big-model"
    (project / ".cb.toml").write_text('model = "fast"\n')
    assert cb("hi", cwd=project, **env).returncode == 0
    assert scripted.requests[-1]["body"]["model"] == "scripted"
    listed = cb("models", cwd=project, **env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == ("* scripted  (context 4096)  (alias fast)\n"
                             "aliases:\n  fast = scripted\n  big = some-big-model\n")
    assert "(.cb.toml, alias fast)" in cb("config", "show", cwd=project, **env).stdout.replace(str(project) + "/", "")


def test_agents_md_is_in_the_prompt_like_an_open_file_and_cut_visibly(scripted: ScriptedServer,
                                                                      project: Path) -> None:
    env = {"CB_BASE_URL": scripted.base_url}
    (project / "AGENTS.md").write_text("# Conventions\nUse tabs, never spaces.\n")
    (project / "CONVENTIONS.md").write_text("Tests first.\n")
    assert cb("open", "app.py", cwd=project).returncode == 0
    assert cb("files", cwd=project).stdout.splitlines() == [
        "AGENTS.md  (2 lines, project instructions)", "CONVENTIONS.md  (1 lines, project instructions)",
        "app.py  (2 lines)"]
    assert cb("hi", cwd=project, **env).returncode == 0
    system = _system(scripted)
    agents = system.index('<file path="AGENTS.md"')  # the instruction files first, then the open ones
    assert system.index('<file path="CONVENTIONS.md"') > agents and system.index('<file path="app.py"', agents) > agents
    assert "2| Use tabs, never spaces." in system
    (project / "AGENTS.md").write_text("".join(f"rule {i}: keep every function under forty lines\n"
                                               for i in range(400)))
    out = cb("hi", cwd=project, CB_CONTEXT_LENGTH="3000", CB_MAX_TOKENS="64", **env)
    assert out.returncode == 0, out.stderr
    assert "lines of AGENTS.md not shown]" in out.stderr and "lines of AGENTS.md not shown]" in _system(scripted)
    assert cb("hi", cwd=project, CB_INSTRUCTION_FILES="", **env).returncode == 0
    assert '<file path="AGENTS.md"' not in _system(scripted) and "2|     return 3.14 * r * r" in _system(scripted)


def _fake_cb_on_path(tmp_path: Path) -> dict[str, str]:
    """PATH with a `cb` that runs this checkout's cb, as the completion scripts call it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cb").write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m cb "$@"\n')
    (bin_dir / "cb").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_bash_sources_the_completion_script_and_completes_commands_options_and_aliases(project: Path,
                                                                                       tmp_path: Path) -> None:
    script = cb("completion", "bash", cwd=project)
    assert script.returncode == 0 and "complete -o default -F _cb_completion cb" in script.stdout
    assert subprocess.run(["bash", "-n"], input=script.stdout, text=True, capture_output=True).returncode == 0
    config.set_alias("fast", "qwen2.5-coder-0.5b", paths.config_file())
    env = {**os.environ, **_fake_cb_on_path(tmp_path)}

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        probe = (f'eval "$(cb completion bash)"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
                 '_cb_completion; printf "%s\\n" "${COMPREPLY[@]}"')
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, cwd=project, timeout=60,
                             env=env)
        assert out.returncode == 0, out.stderr
        return [x for x in out.stdout.splitlines() if x]

    assert complete("cb", "ses") == ["session"]
    assert {"ask", "chat", "completion", "session", "models"} <= set(complete("cb", ""))
    assert complete("cb", "session", "se") == ["search"]
    assert complete("cb", "models", "al") == ["alias"]
    assert complete("cb", "--con") == ["--continue"]  # a question's options, at the root
    assert complete("cb", "why?", "--max") == ["--max-tokens"]
    assert complete("cb", "-m", "") == ["fast"]
    assert complete("cb", "open", "") == []  # a file goes here: bash completes it (-o default)


def test_zsh_and_fish_scripts_and_their_described_candidates(project: Path) -> None:
    zsh = cb("completion", "zsh", cwd=project).stdout
    fish = cb("completion", "fish", cwd=project).stdout
    assert zsh.startswith("#compdef cb\n") and "compdef _cb cb" in zsh and "_files" in zsh
    assert "complete -c cb -f -a '(__cb_complete)'" in fish and "__fish_complete_path" in fish
    zsh_out = cb("session", "se", cwd=project, _CB_COMPLETE="zsh").stdout
    assert zsh_out.startswith("search:Find TEXT in the conversations of every session")
    fish_out = cb("--ver", cwd=project, _CB_COMPLETE="fish").stdout
    assert fish_out == "--version\tPrint cb's version and exit.\n"
    bad = cb("completion", "tcsh", cwd=project)
    assert bad.returncode == 2 and "use one of: bash, zsh, fish" in bad.stderr


def test_session_search_finds_text_in_every_sessions_conversation_sanitized(tmp_path: Path, project: Path) -> None:
    other = tmp_path / "other-project"
    other.mkdir()
    first = session.new(project)
    first.append("user", "why is there a Race condition in the worker pool when it shuts down?")
    first.append("assistant", "Because the queue is closed first.")
    second = session.new(other, "ops")
    second.append("assistant", "no race \x1b]52;c;aGk=\x07 here")
    out = cb("session", "search", "race", cwd=project)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{second.id}  #1 assistant: no race ␛]52;c;aGk=")
    assert lines[1] == f"{first.id}  #1 user: why is there a Race condition in the worker pool when it sh…"
    assert len(lines) == 2 and "\x1b" not in out.stdout
    long = session.new(project)
    long.append("user", "x" * 100 + " needle " + "y" * 100)
    found = cb("session", "search", "NEEDLE", cwd=project).stdout.splitlines()
    assert found == [f"{long.id}  #1 user: …{'x' * 39} needle {'y' * 39}…"]
    none = cb("session", "search", "absent words", cwd=project)
    assert none.returncode == 0 and none.stdout == "" and "no message contains 'absent words'" in none.stderr
