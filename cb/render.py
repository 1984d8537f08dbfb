"""Terminal output for answers and status: streaming Markdown on a terminal, plain text everywhere else.

Every piece of untrusted text passes `cb.sanitize` before it reaches rich, and rich only ever renders it as
`Markdown(hyperlinks=False)` or `Text` (never markup, never `Text.from_ansi`), so the only escape sequences
cb writes are its own styling and the live region's redraws.

- A terminal (stdout is a TTY, TERM is not "dumb"): answers render as Markdown while they stream. Lines that
  can no longer change are printed once above a small live region holding the last few lines, so long
  answers scroll normally and nothing is redrawn off-screen. Rich honours NO_COLOR and the terminal's width.
- Anything else (a pipe, a file, TERM=dumb): the sanitised text is written as it arrives, no styling, no
  spinners, no redraws.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from cb.sanitize import StreamSanitizer, sanitize

LIVE_LINES = 6
REFRESH_S = 0.08


def is_terminal(stream: IO[str]) -> bool:
    """Whether `stream` is an interactive terminal cb may style and redraw."""
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


class Out:
    """Where cb writes: answers to stdout, status and errors to stderr; knows whether each is a terminal."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None,
                 code_theme: str = "monokai") -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.rich = is_terminal(self.stdout)
        self.code_theme = code_theme
        self._console: Any = None
        self._err_console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stdout, highlight=False, soft_wrap=False)
        return self._console

    @property
    def err_console(self) -> Any:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(file=self.stderr, highlight=False)
        return self._err_console

    # --- simple lines ----------------------------------------------------------------------------------

    def info(self, text: str, style: str = "dim") -> None:
        """A status line on stderr (dim on a terminal). `text` is sanitised."""
        if is_terminal(self.stderr):
            from rich.text import Text

            self.err_console.print(Text(sanitize(text), style=style))
        else:
            self.stderr.write(sanitize(text) + "\n")
            self.stderr.flush()

    def error(self, text: str) -> None:
        """One line `cb: <text>` on stderr."""
        self.info(f"cb: {text}", style="bold red")

    def line(self, text: str = "", style: str = "") -> None:
        """A line on stdout (styled on a terminal). `text` is sanitised."""
        if self.rich:
            from rich.text import Text

            self.console.print(Text(sanitize(text), style=style))
        else:
            self.stdout.write(sanitize(text) + "\n")
            self.stdout.flush()

    def markdown(self, text: str) -> None:
        """A complete piece of Markdown (sanitised)."""
        if self.rich:
            from rich.markdown import Markdown

            self.console.print(Markdown(sanitize(text), code_theme=self.code_theme, hyperlinks=False))
        else:
            self.stdout.write(sanitize(text).rstrip("\n") + "\n")
            self.stdout.flush()

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[Callable[[str], None]]:
        """A spinner on stderr while waiting, only on a terminal; yields a function that changes its text."""
        if is_terminal(self.stderr):
            with self.err_console.status(sanitize(text), spinner="dots") as status:
                yield lambda new: status.update(sanitize(new))
        else:
            yield lambda _: None

    # --- streaming answers -----------------------------------------------------------------------------

    def stream(self) -> AnswerStream:
        return MarkdownStream(self) if self.rich else PlainStream(self)


class AnswerStream:
    """Receives an answer's text pieces as they arrive; `close` finishes the display."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.sanitizer = StreamSanitizer()
        self.text = ""

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, piece: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PlainStream(AnswerStream):
    def write(self, piece: str) -> None:
        safe = self.sanitizer.feed(piece)
        self.text += safe
        self.out.stdout.write(safe)
        self.out.stdout.flush()

    def close(self) -> None:
        rest = self.sanitizer.flush()
        self.text += rest
        self.out.stdout.write(rest if self.text.endswith("\n") or not self.text else rest + "\n")
        self.out.stdout.flush()


class MarkdownStream(AnswerStream):
    """Markdown re-rendered as text arrives; settled lines printed once, the last few kept live."""

    def __init__(self, out: Out) -> None:
        super().__init__(out)
        from rich.live import Live

        self.printed = 0
        self.last = 0.0
        self.live = Live(console=out.console, auto_refresh=False, transient=True, redirect_stdout=False,
                         redirect_stderr=False)
        self.live.start()
        self.closed = False

    def _lines(self) -> list[Any]:
        from rich.markdown import Markdown

        console = self.out.console
        md = Markdown(self.text, code_theme=self.out.code_theme, hyperlinks=False)
        return console.render_lines(md, console.options, pad=False)

    def _show(self, final: bool) -> None:
        from rich.segment import Segment, Segments

        lines = self._lines()
        settled = len(lines) if final else max(len(lines) - LIVE_LINES, self.printed)
        if settled > self.printed:
            self.live.console.print(Segments([s for line in lines[self.printed:settled] for s in (*line,
                                                                                                 Segment.line())]))
        self.printed = max(settled, self.printed)
        live = [s for line in lines[self.printed:] for s in (*line, Segment.line())][:-1]
        self.live.update(Segments(live), refresh=True)

    def write(self, piece: str) -> None:
        self.text += self.sanitizer.feed(piece)
        now = time.monotonic()
        if now - self.last >= REFRESH_S:
            self.last = now
            self._show(final=False)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.text += self.sanitizer.flush()
        try:
            self._show(final=True)
        finally:
            self.live.update("", refresh=True)
            self.live.stop()
