"""`cb "question"` (= `cb ask "question"`): answer once, propose edits, exit with a meaningful code.

Piped stdin is context: `git diff | cb "write the commit message"`. With no question, piped stdin is the
question itself. The answer streams to stdout (Markdown on a terminal, plain text in a pipe); the status line
goes to stderr. `--json` prints one JSON object instead: {"answer", "edits", "applied", "usage", "edit_mode",
"repairs", ...} ("repairs": the answers whose edits could not be applied and went back to the model, with the
errors).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from cb import exits
from cb.commands import common


def ask(
    question: Annotated[list[str] | None, typer.Argument(help="The question (quote it, or its words are joined).",
                                                         show_default=False)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply proposed file edits without asking "
                                      "(shell commands are never run this way).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: answer, edits, applied, "
                                          "usage.")] = False,
    edit: Annotated[bool, typer.Option("--edit", "-e", help="The question asks for a change: the answer must "
                                       "propose an edit (with a grammar it opens with one; without, an answer "
                                       "with none goes back to the model).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Leave the session's conversation out of the "
                                        "prompt (open files still count).")] = False,
    system: common.SystemOpt = None,
    session_ref: common.SessionOpt = None,
    resume: common.ContinueOpt = False,
    model: common.ModelOpt = None,
    base_url: common.BaseUrlOpt = None,
    api_key: common.ApiKeyOpt = None,
    temperature: common.TemperatureOpt = None,
    max_tokens: common.MaxTokensOpt = None,
    grammar: common.GrammarOpt = None,
) -> None:
    """Answer one question with the open files as context, then exit.

    Exit codes: 0 answered (edits applied if any); 1 error; 2 bad usage; 3 edits proposed but not applied
    (no terminal and no --yes, or declined); 4 edits could not be applied; 130 interrupted.
    """
    from cb.chat import Chat, describe_error, info_dict, stats_line
    from cb.edits import handle_edits
    from cb.render import Out

    settings = common.settings(model=model, base_url=base_url, api_key=api_key, temperature=temperature,
                               max_tokens=max_tokens, system_prompt=system, grammar=grammar)
    text = " ".join(question or []).strip()
    piped = None if sys.stdin.isatty() else sys.stdin.read()
    if not text:
        if not piped or not piped.strip():
            common.fail("no question given: cb \"question\", or pipe text into cb", exits.EXIT_USAGE)
        text, piped = piped.strip(), None
    out = Out(code_theme=settings.code_theme)
    session = common.current_session(settings, session_ref, resume)
    with Chat(settings, session, out, stdin_text=piped) as chat:
        try:
            turn = chat.ask(text, history=[] if fresh else None, show=not as_json, edit=edit)
        except KeyboardInterrupt:  # before the answer started (server start-up, context): nothing recorded
            raise typer.Exit(exits.EXIT_INTERRUPTED) from None
        except Exception as exc:  # every failure of a turn becomes one line, never a traceback
            common.fail(describe_error(exc))
    if turn.cancelled:
        raise typer.Exit(exits.EXIT_INTERRUPTED)
    for cut in turn.cuts:
        out.info(f"[… {cut}]")
    if not as_json:
        out.info(stats_line(turn))
    outcome = handle_edits(turn.answer, session, out, yes=yes, quiet=as_json)
    if as_json:
        repairs = [{"answer": r.answer, "errors": list(r.errors)} for r in turn.repairs]
        sys.stdout.write(json.dumps({"answer": turn.answer, **outcome.as_dict(), "usage": info_dict(turn),
                                     "edit_mode": turn.mode, "repairs": repairs,
                                     "session": session.id}) + "\n")  # ASCII: no raw C1 or surrogates
    raise typer.Exit(outcome.exit_code)
