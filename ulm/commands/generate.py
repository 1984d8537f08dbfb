"""`ulm generate`: complete one prompt with a local model and stream the text to stdout.

Also home of what `ulm generate` and `ulm chat` share: the model and sampling options, loading with
one-line errors, and writing model text safely to a terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from ulm.api import Model

# --- options shared with `ulm chat` ---------------------------------------------------------------

MODEL = typer.Option(None, "--model", "-m", help="Short name (see `ulm models`), .gguf file or HF directory. "
                     "Default: the embedded smollm2-135m.")
MODE = typer.Option("exact", "--mode", help="exact: fp32 weights (reference numerics); fast: int4 weights with "
                    "bf16 activations (faster, slightly less exact).")
MAX_TOKENS = typer.Option(256, "--max-tokens", "-n", min=1, help="Most tokens to generate.")
TEMPERATURE = typer.Option(0.2, "--temperature", "-t", min=0.0, help="Randomness; 0 = greedy (deterministic).")
TOP_P = typer.Option(0.9, "--top-p", help="Sample from the smallest set of tokens holding this much probability.")
TOP_K = typer.Option(0, "--top-k", min=0, help="Sample from the k most likely tokens only (0 = off).")
MIN_P = typer.Option(0.0, "--min-p", help="Drop tokens less likely than min-p × the most likely one (0 = off).")
REPEAT = typer.Option(1.0, "--repetition-penalty", help="Penalise tokens already generated (1 = off, 1.1 = mild).")
SEED = typer.Option(None, "--seed", "-s", help="Seed for reproducible sampling.")
STOP = typer.Option(None, "--stop", help="Stop before this text (repeatable); it is never printed.")
STATS = typer.Option(False, "--stats", help="Print token counts and speed to stderr at the end.")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one error line to stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause (bad model, prompt, option value) into one line and exit 1."""
    from ulm.config import ConfigError
    from ulm.errors import UlmError
    from ulm.registry import ModelNotFoundError

    try:
        yield
    except (UlmError, ModelNotFoundError, ConfigError, ValueError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def load_model(model: str | None, mode: str) -> Model:
    """`ulm.load` with one-line errors; progress on stderr (the long first-time stages: kernel build, checking
    a model's pieces, repacking or converting its weights)."""
    import ulm
    from ulm.commands.progressbar import shown

    if sys.stderr.isatty():
        typer.echo("loading model…", err=True)
    with user_errors(), shown():
        return ulm.load(model, mode=mode)


def sampling_options(max_tokens: int, temperature: float, top_p: float, top_k: int, min_p: float,
                     repetition_penalty: float, seed: int | None, stop: list[str] | None) -> dict[str, Any]:
    """The keyword arguments of `Model.generate`/`stream` for the shared options."""
    return dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                repetition_penalty=repetition_penalty, seed=seed, stop=stop or None)


def terminal_writer(stream: Any = None) -> Callable[[str], None]:
    """A write function for model text: to a terminal, control characters (escape sequences) are shown as
    visible escapes instead of being interpreted; to a pipe or file, text passes unchanged. A closed pipe
    ends the command quietly (exit 0)."""
    out = stream or sys.stdout
    tty = out.isatty()

    def write(text: str) -> None:
        if tty:
            text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
        try:
            out.write(text)
            out.flush()
        except BrokenPipeError:  # the reader went away (`ulm generate … | head -1`): stop quietly
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # no second error at exit's flush
            raise typer.Exit(0) from None

    return write


def print_stats(event: Any) -> None:
    """Usage and timings of a finished stream, one line to stderr."""
    u, t = event.usage, event.timings
    typer.echo(f"[{event.finish_reason}] prompt {u.prompt_tokens} tokens ({u.cached_tokens} cached), "
               f"{u.completion_tokens} generated; prefill {t.prefill_ms:.0f} ms, "
               f"decode {t.decode_tokens_per_s:.1f} tokens/s", err=True)


# --- the command ------------------------------------------------------------------------------------


def generate(
    prompt: str = typer.Argument(None, help="The prompt; '-' or nothing reads it from stdin."),
    model: str = MODEL,
    chat: bool = typer.Option(True, "--chat/--raw", help="--chat wraps the prompt as a user message in the "
                              "model's chat template; --raw continues the text as it is."),
    system: str = typer.Option(None, "--system", help="System message (with --chat)."),
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
    """Generate a completion for PROMPT and stream it to stdout.

    \b
    Examples:
      ulm generate "Write a haiku about the sea"
      ulm generate --raw "def fibonacci(n):" --stop "\\n\\n" -t 0
      git diff | ulm generate - --system "Write a one-line commit message" -n 40
    """
    if prompt is None or prompt == "-":
        if sys.stdin.isatty():
            fail("no prompt: give one as an argument, or pipe it in with '-'", 2)
        prompt = sys.stdin.read()
    if not prompt.strip():
        fail("the prompt is empty")
    if system is not None and not chat:
        fail("--system needs --chat")
    m = load_model(model, mode)
    messages: Any = prompt
    if chat:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    options = sampling_options(max_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed, stop)
    write = terminal_writer()
    last = None
    with user_errors():
        events = m.stream(messages, **options)
        try:
            for event in events:
                write(event.text)
                last = event
        except KeyboardInterrupt:
            write("\n")
            raise typer.Exit(130) from None
    write("\n")
    if stats and last is not None and last.finish_reason is not None:
        print_stats(last)
