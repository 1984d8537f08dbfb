"""`ulm chat`: a minimal direct chat with a local model (no server): read a message, stream the answer.

The conversation is kept for the session, so each turn only prefills its new tokens (the model's KV
cache holds the earlier ones); when it no longer fits the context, the oldest turns are dropped.
Ctrl-C stops the answer being written (it is kept, cut short), Ctrl-D (end of input) exits.
Without a terminal, each line of stdin is one user message, and only the answers are printed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from ulm.commands.generate import (
    MAX_TOKENS,
    MIN_P,
    MODE,
    MODEL,
    REPEAT,
    SEED,
    STATS,
    STOP,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    load_model,
    print_stats,
    sampling_options,
    terminal_writer,
    user_errors,
)

if TYPE_CHECKING:
    from ulm.api import Model

HELP_TEXT = "Type a message and press Enter. /reset forgets the conversation, /exit (or Ctrl-D) quits, " \
            "Ctrl-C stops an answer."


def _fit(model: Model, history: list[dict[str, str]], system: list[dict[str, str]], max_tokens: int) -> int:
    """Drop the oldest exchanges until the conversation plus the answer fits the context; the prompt length."""
    from ulm.errors import ContextLengthError

    limit = model.max_len
    while True:
        n = len(model.encode(system + history))
        if n + max_tokens <= limit or len(history) <= 1:
            if n >= limit:
                raise ContextLengthError(n, limit, f"this message alone has {n} tokens, more than the context "
                                         f"of {limit}")
            return n
        del history[: 2 if len(history) > 2 else 1]


def _answer(model: Model, messages: list[dict[str, str]], options: dict[str, Any], write: Any,
            stats: bool) -> str:
    """Stream one answer; Ctrl-C (at any point of the turn) cuts it short. Returns the text written."""
    parts: list[str] = []
    last = None
    try:
        for event in model.stream(messages, **options):
            write(event.text)
            parts.append(event.text)
            last = event
    except KeyboardInterrupt:
        write(" [stopped]")
    write("\n")
    if stats and last is not None and last.finish_reason is not None:
        print_stats(last)
    return "".join(parts)


def chat(
    model: str = MODEL,
    system: str = typer.Option(None, "--system", help="System message that starts the conversation."),
    max_tokens: int = MAX_TOKENS,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    top_k: int = TOP_K,
    min_p: float = MIN_P,
    repetition_penalty: float = REPEAT,
    seed: int = SEED,
    stop: list[str] = STOP,
    mode: str = MODE,
    stats: bool = STATS,
) -> None:
    """Chat with a local model in the terminal (no server needed).

    \b
    Examples:
      ulm chat                               # the embedded SmolLM2-135M-Instruct
      ulm chat -m ./my-model.gguf --mode fast -t 0.3
      printf 'Hi!\\nName a colour.\\n' | ulm chat -t 0   # one message per line, answers on stdout
    """
    from ulm.errors import UlmError

    interactive = sys.stdin.isatty()
    m = load_model(model, mode)
    options = sampling_options(max_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed, stop)
    with user_errors():
        m.request("x", **options)  # validate the options once, before the first message
    write = terminal_writer()
    preamble = [{"role": "system", "content": system}] if system else []
    history: list[dict[str, str]] = []
    if interactive:
        typer.echo(f"{m.source.name} ({m.mode} mode). {HELP_TEXT}", err=True)
    while True:
        try:
            line = input(">>> ") if interactive else sys.stdin.readline()
        except KeyboardInterrupt:  # at the prompt: a fresh line, like a shell
            typer.echo("", err=True)
            continue
        except EOFError:
            if interactive:
                typer.echo("", err=True)
            return
        if not interactive and line == "":
            return  # end of input
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            history.clear()
            typer.echo("(conversation forgotten)", err=True)
            continue
        history.append({"role": "user", "content": text})
        try:
            try:
                _fit(m, history, preamble, max_tokens)
            except KeyboardInterrupt:  # Ctrl-C before the answer started: drop the message
                typer.echo(" [stopped]", err=True)
                history.pop()
                continue
            reply = _answer(m, preamble + history, options, write, stats)
        except UlmError as exc:  # e.g. a message longer than the context: say so, keep chatting
            typer.echo(f"error: {exc}", err=True)
            history.pop()
            continue
        history.append({"role": "assistant", "content": reply})
