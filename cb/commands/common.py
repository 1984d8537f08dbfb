"""Options shared by the commands that talk to a model, defined once, and the helpers every command uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cb import config, session
from cb.exits import EXIT_ERROR, EXIT_USAGE

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model name (config key: model).",
                                              show_default=False)]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible base URL, e.g. "
                                                "http://127.0.0.1:8080/v1 (config key: base_url; empty = local "
                                                "ulm serve).", show_default=False)]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", help="API key (config key: api_key; env CB_API_KEY, "
                                               "else OPENAI_API_KEY).", show_default=False)]
TemperatureOpt = Annotated[float | None, typer.Option("--temperature", "-t", help="Sampling temperature.",
                                                      show_default=False)]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-tokens", help="Most tokens in the answer.",
                                                  show_default=False)]
SystemOpt = Annotated[str | None, typer.Option("--system", "-s", help="Extra instructions for this run, in place "
                                               "of the system_prompt setting.", show_default=False)]
SessionOpt = Annotated[str | None, typer.Option("--session", help="Use this session (id, id prefix or name) for "
                                                "this run; the project's current session stays.", show_default=False)]
GrammarOpt = Annotated[str | None, typer.Option("--grammar", help="auto, on or off: constrain the answer to edit "
                                                "blocks about the open files with a grammar (auto: when the server "
                                                "is ulm serve with grammar support; config key: grammar).",
                                                show_default=False)]
ContinueOpt = Annotated[bool, typer.Option("--continue", "-c", help="Continue this project's most recent "
                                           "conversation (it becomes the current session).")]

def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print `cb: message` on stderr (one line) and exit with `code`."""
    from cb.render import Out

    Out().error(message)
    raise typer.Exit(code)


def settings(**flags: Any) -> config.Settings:
    """Resolve the layered config with these flags; a bad config is a one-line error."""
    try:
        return config.load(flags)
    except config.ConfigError as exc:
        fail(str(exc))


def current_session(settings: config.Settings, ref: str | None = None, resume: bool = False) -> session.Session:
    """The session a command works in: `ref` (--session) for this run, the project's latest conversation
    (--continue, made current), else the project's current one."""
    if ref is not None and resume:
        fail("--session and --continue each name a session; give one", EXIT_USAGE)
    project = Path(settings.project_root)
    try:
        if ref is not None:
            return session.find(ref)
        if resume:
            latest = session.latest(project)
            if latest is None:
                fail(f"no conversation to continue in {project} (cb session list --all shows every project's)")
            session.use(latest)
            return latest
        return session.current(project)
    except session.SessionError as exc:
        fail(str(exc))
