"""`cb chat` (and `cb` alone on a terminal): the interactive REPL."""

from __future__ import annotations

import sys

from cb import exits
from cb.commands import common


def chat(
    model: common.ModelOpt = None,
    base_url: common.BaseUrlOpt = None,
    api_key: common.ApiKeyOpt = None,
    temperature: common.TemperatureOpt = None,
    max_tokens: common.MaxTokensOpt = None,
    grammar: common.GrammarOpt = None,
    system: common.SystemOpt = None,
    session_ref: common.SessionOpt = None,
    resume: common.ContinueOpt = False,
) -> None:
    """Chat with the open files as context, in the current session (resumed where you left it), or the one
    --session or -c/--continue names. `cb -c`, `cb -s TEXT`, … on a terminal open the chat too.

    Enter sends, Alt-Enter (or Esc Enter) adds a line, Ctrl-X Ctrl-E opens $EDITOR, Ctrl-C cancels an
    answer, Ctrl-D quits. Type /help for the slash commands (/open /close /files /clear /undo /copy /tabs
    /run /model /session).
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        common.fail("the chat REPL needs a terminal; for pipes use: cb \"question\"", exits.EXIT_USAGE)
    from cb.repl import run

    settings = common.settings(model=model, base_url=base_url, api_key=api_key, temperature=temperature,
                               max_tokens=max_tokens, system_prompt=system, grammar=grammar)
    run(settings, common.current_session(settings, session_ref, resume))
