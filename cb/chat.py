"""One conversation turn, shared by the one-shot command and the REPL.

`Chat` ties the parts together: settings → a backend (the configured base URL, or the local `ulm serve`
started on demand) → context assembled fresh from the session (open files, tab tails, workspace, piped
stdin, conversation) → the answer streamed through the sanitising renderer → the turn appended to the
session. It returns a `Turn` with the answer, usage, timing and what was cut from the context. A prompt the
server refuses as too long for its context is cut further and sent again (`Chat._events`).

Edits are asked for as cb.exchange says: with a grammar of the open files when the server is ulm serve
with grammar support (the `grammar` setting: auto | on | off), with tool calls where another server takes
them, else plainly; an answer whose edits cannot be applied gets up to `edit_retries` repair rounds, and the
last answer is the turn's. A server that refuses the grammar or the tools (a 400 naming them) is asked again
plainly, and remembered as such, unless `grammar = on`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cb import context, exchange, paths, server
from cb.backend import Backend, BackendError, ContextOverflow, Delta, Done, ServerFeatures
from cb.config import KEYS, Settings
from cb.render import Out
from cb.session import Session

DEFAULT_CONTEXT = 2048
OVERFLOW_RETRIES = 2


class TurnCancelled(Exception):
    """Raised by an `on_text` callback to cancel the turn, as Ctrl-C does on a terminal (cb web: the page left)."""


@dataclass
class Turn:
    question: str
    answer: str = ""
    done: Done | None = None
    cancelled: bool = False
    cuts: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    context_length: int = 0
    mode: str = "plain"  # how edits were asked for: grammar | tools | plain (cb.exchange)
    repairs: list[exchange.Repair] = field(default_factory=list)  # answers replaced by a repair round, in order


class Chat:
    """A session talking to one backend; `ask()` runs a turn. Use as a context manager (closes HTTP)."""

    def __init__(self, settings: Settings, session: Session, out: Out, stdin_text: str | None = None) -> None:
        self.settings = settings
        self.session = session
        self.out = out
        self.stdin_text = stdin_text
        self._backend: Backend | None = None
        self._counter: context.Counter | None = None
        self._context_length: int | None = None
        self.last: Turn | None = None

    def __enter__(self) -> Chat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._counter is not None:
            self._counter.save()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # --- backend -----------------------------------------------------------------------------------------

    @property
    def local(self) -> bool:
        """Whether cb manages the server (no base_url configured)."""
        return not self.settings.base_url

    def backend(self) -> Backend:
        """The connected backend; starts the local server on first use when no base_url is set."""
        if self._backend is None:
            s = self.settings
            info = None
            if self.local:
                info = server.ensure(s.model, s.server_port, s.server_args, s.server_start_timeout,
                                     wait=self.out.spinner)
                base_url = info.base_url
            else:
                base_url = s.base_url
            backend = Backend(base_url, api_key(s, self.local), s.model, s.timeout)
            try:
                if info is not None:
                    self._learn_local(backend, info)
                elif s.source.get("model") == "default":
                    backend.use_served_model()
            except BaseException:
                backend.close()
                raise
            self._backend = backend
            store = paths.cache_dir() / "token-counts" / f"{_safe(backend.model)}.json"
            self._counter = context.Counter(backend.count_tokens, store)
        return self._backend

    def _learn_local(self, backend: Backend, info: server.ServerInfo) -> None:
        """The local server's model id and context length, asked once per server start (kept in its dir)."""
        record = paths.server_dir() / "served.json"
        stamp = f"{info.pid}:{info.started}"
        try:
            known = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        if (isinstance(known, dict) and known.get("stamp") == stamp and isinstance(known.get("context_length"), int)
                and isinstance(known.get("features"), dict)):
            backend.model = str(known["model_id"])
            self._context_length = self.settings.context_length or known["context_length"]
            features = known["features"]
            backend.assume_features(ServerFeatures(str(features.get("server", "")), features.get("grammar") is True,
                                                   features.get("tools") is True))
            return
        backend.use_served_model()
        length = backend.context_length() or DEFAULT_CONTEXT
        self._context_length = self.settings.context_length or length
        features = backend.features()
        record.write_text(json.dumps({"stamp": stamp, "model_id": backend.model, "context_length": length,
                                      "features": {"server": features.server, "grammar": features.grammar,
                                                   "tools": features.tools}}), encoding="utf-8")

    def set_model(self, model: str) -> None:
        """Switch models (the local server restarts with it on the next turn)."""
        self.settings = self.settings.replaced("session", model=model)
        self.close()
        self._context_length = None

    def context_length(self) -> int:
        """The configured context length, else what the server reports, else DEFAULT_CONTEXT."""
        if self._context_length is None:
            self._context_length = self.settings.context_length or self.backend().context_length() or DEFAULT_CONTEXT
        return self._context_length

    # --- context -----------------------------------------------------------------------------------------

    def file_paths(self) -> list[str]:
        """The files the model sees: the project's instruction files (AGENTS.md, …) first, then the open ones."""
        return [*self.session.instruction_files(self.settings.instruction_files.split()), *self.session.files]

    def sources(self) -> list[context.Source]:
        """Everything the model should see besides the conversation, read fresh now."""
        out = [context.file_source(Path(p), self.session.display(p)) for p in self.file_paths()]
        out += [context.tab_source(name, text) for name, text in tab_tails(self.settings.tab_lines)]
        out.append(context.workspace_source(Path.cwd(), Path(self.session.project)))
        if self.stdin_text:
            out.append(context.stdin_source(self.stdin_text))
        return out

    def shape(self, sources: list[context.Source], edit: bool = False) -> exchange.Shape:
        """How this turn asks for edits (cb.exchange): the mode for this server, about the files in `sources`;
        `edit`: the answer must propose one."""
        mode = exchange.edit_mode(self.settings.grammar, self.backend().features())
        shown = [(s.label, s.data) for s in sources if s.kind == "files" and s.data is not None]
        return exchange.request_shape(mode, exchange.open_files(shown) if mode == "grammar" else [], edit=edit)

    def assemble(self, question: str, history: list[dict[str, str]] | None = None, correction: int = 0, *,
                 sources: list[context.Source] | None = None, instructions: str | None = None) -> context.Assembled:
        """The prompt for `question`: `sources` (default: read now) and the edit `instructions` (default: the
        ones this server's mode teaches)."""
        self.backend()
        assert self._counter is not None
        sources = self.sources() if sources is None else sources
        return context.assemble(
            question=question,
            history=self.session.messages() if history is None else history,
            sources=sources,
            count=self._counter,
            context_length=self.context_length(),
            max_tokens=self.settings.max_tokens,
            extra_system=self.settings.system_prompt,
            instructions=self.shape(sources).instructions if instructions is None else instructions,
            correction=correction,
        )

    # --- a turn ------------------------------------------------------------------------------------------

    def ask(self, question: str, *, history: list[dict[str, str]] | None = None, record: bool = True,
            show: bool = True, on_text: Callable[[str], None] | None = None, edit: bool = False) -> Turn:
        """Ask one question; stream the answer to the terminal when `show`, and to `on_text` (each raw,
        unsanitised piece as it arrives) when given; record it in the session. `edit`: the question asks for a
        change, so the answer must propose an edit (cb.exchange).

        KeyboardInterrupt during the answer, or TurnCancelled from `on_text`, cancels it (the connection is
        closed, the server stops generating); the turn comes back with `cancelled=True` and nothing is recorded.
        """
        turn = Turn(question)
        sources = self.sources()
        shape = self.shape(sources, edit)
        built = self.assemble(question, history, sources=sources, instructions=shape.instructions)
        view = self.out.stream() if show else None
        events = self._events(turn, built, history, shape, edit)
        try:
            for event in events:
                if isinstance(event, Delta):
                    turn.answer += event.text
                    if view:
                        view.write(event.text)
                    if on_text:
                        on_text(event.text)
                elif isinstance(event, exchange.Repair):
                    turn.repairs.append(event)
                    turn.answer = ""
                    note = repair_note(event)
                    if view:
                        view.close()
                        self.out.info(note)
                        view = self.out.stream()
                    if on_text:
                        on_text(f"\n\n[{note}]\n\n")
                else:
                    turn.done = event
        except (KeyboardInterrupt, TurnCancelled):
            turn.cancelled = True
        finally:
            events.close()  # closing the stream is what tells the server to stop (and free the slot)
            if view:
                with contextlib.suppress(Exception):
                    view.close()
        if record and not turn.cancelled:
            self.session.append("user", question)
            self.session.append("assistant", turn.answer)
        self.last = turn
        return turn

    def _events(self, turn: Turn, built: context.Assembled, history: list[dict[str, str]] | None,
                shape: exchange.Shape, edit: bool) -> Iterator[Delta | exchange.Repair | Done]:
        """The answer's events, its repair rounds included (cb.exchange.rounds)."""
        first = self._first_round(turn, built, history, shape)

        def ask_again(answer: str, errors: list[str]) -> Iterator[Delta | Done] | None:
            sources = self.sources()  # read again: a file saved meanwhile is shown (and constrained) as it is now
            again = self.shape(sources, edit)
            try:
                fresh = self.assemble(turn.question, history, sources=sources, instructions=again.instructions)
            except context.ContextError:
                return None
            assert self._counter is not None
            follow = exchange.follow_up(fresh.messages, fresh.prompt_tokens, fresh.max_tokens, fresh.context_length,
                                        answer, errors, again.mode, self._counter)
            if follow is None:
                return None
            messages, budget = follow
            return self.backend().chat(messages, max_tokens=budget, temperature=self.settings.temperature,
                                       extra=dict(again.extra))

        root = Path(self.session.project)
        yield from exchange.rounds(first, ask_again=ask_again, retries=self.settings.edit_retries,
                                   check=lambda answer: exchange.problems(answer, root, edit=edit))

    def _first_round(self, turn: Turn, built: context.Assembled, history: list[dict[str, str]] | None,
                     shape: exchange.Shape) -> Iterator[Delta | Done]:
        """The first answer's events. A prompt the server refuses as too long for its context (the estimate of
        a cut was low, or its context is smaller than configured) is assembled again with its counts, and sent
        again, at most OVERFLOW_RETRIES times. A server that refuses the shape's grammar or tools is asked
        plainly, and is known as plain from then on (not with grammar = on: then its refusal stands)."""
        overflows = 0
        while True:
            turn.cuts, turn.prompt_tokens, turn.context_length = built.cuts, built.prompt_tokens, built.context_length
            turn.mode = shape.mode
            stream = self.backend().chat(built.messages, max_tokens=built.max_tokens,
                                         temperature=self.settings.temperature, extra=dict(shape.extra))
            try:
                yield from stream
                return
            except ContextOverflow as exc:
                if overflows == OVERFLOW_RETRIES:
                    raise
                overflows += 1
                try:
                    built = self.assemble(turn.question, history, self._correction(built, exc),
                                          instructions=shape.instructions)
                except context.ContextError:
                    raise exc from None  # not even the mandatory part fits: the server's word stands
            except BackendError as exc:
                if self.settings.grammar == "on" or not exchange.refused(exc, shape):
                    raise
                self.out.info(f"the server refused the {shape.mode} request ({exc}); asking plainly")
                self.backend().assume_features(ServerFeatures(self.backend().features().server))
                shape = exchange.request_shape("plain", [])
                built = self.assemble(turn.question, history, built.correction, instructions=shape.instructions)
            finally:
                stream.close()

    def _correction(self, built: context.Assembled, exc: ContextOverflow) -> int:
        """The correction for the next try after `exc`; a context smaller than assumed is learnt instead."""
        if exc.n_ctx and exc.n_ctx < built.context_length:
            self._context_length = exc.n_ctx
            return built.correction
        over = exc.n_prompt_tokens - built.prompt_tokens if exc.n_prompt_tokens else built.prompt_tokens // 4
        return built.correction + max(over, 0) + built.context_length // 50


def api_key(settings: Settings, local: bool) -> str:
    """The key to send: the configured one; for the local server ULM_API_KEY when none is, and never the
    OPENAI_API_KEY fallback (a key for another service)."""
    if local and settings.source.get("api_key") == f"env {KEYS['api_key'].fallback_env}":
        return os.environ.get("ULM_API_KEY", "")
    return settings.api_key or (os.environ.get("ULM_API_KEY", "") if local else "")


def _safe(name: str) -> str:
    """A file-name-safe form of a model id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "model"


def repair_note(repair: exchange.Repair) -> str:
    """The line shown when an answer's edits go back to the model."""
    first = repair.errors[0] if repair.errors else ""
    more = f" (and {len(repair.errors) - 1} more)" if len(repair.errors) > 1 else ""
    return f"the edits above cannot be applied: {first}{more}; asking the model to correct them"


def tab_tails(lines: int) -> list[tuple[str, str]]:
    """(label, plain-text tail) of every agentshell tab, if the daemon is running (it is never started here)."""
    if not paths.agentshell_socket().exists():  # no daemon: not even its client is imported
        return []
    try:
        from agentshell.client import Client
        from agentshell.protocol import AgentshellError
    except ImportError:
        return []
    tails: list[tuple[str, str]] = []
    try:
        with Client.connect(autostart=False, timeout=2.0, client_name="cb") as sh:
            for tab in sh.ls():
                tail = sh.tail(tab.id, lines=lines, reader="cb")
                status = tab.status if tab.exit_code is None else f"{tab.status}, exit {tab.exit_code}"
                tails.append((f"{tab.name or tab.id} ({' '.join(tab.argv)}; {status})", tail.text))
    except (AgentshellError, OSError):
        return tails
    return tails


def describe_error(exc: BaseException) -> str:
    """One line for any failure a turn can raise."""
    if isinstance(exc, BackendError | server.ServerError | context.ContextError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def stats_line(turn: Turn) -> str:
    """The dim line after an answer: tokens in/out, cached, time to first token, tokens/s, context use."""
    done = turn.done
    parts: list[str] = []
    if done is not None:
        u = done.usage
        prompt = u.prompt_tokens if done.usage_reported else turn.prompt_tokens
        parts.append(f"{prompt} in" + ("" if done.usage_reported else " (est.)"))
        parts.append(f"{u.completion_tokens} out" if done.usage_reported else "? out")
        if u.cached_tokens:
            parts.append(f"{u.cached_tokens} cached")
        if done.ttft_s is not None:
            parts.append(f"TTFT {done.ttft_s * 1000:.0f} ms")
        if done.tokens_per_s:
            parts.append(f"{done.tokens_per_s:.1f} tok/s")
        if done.finish_reason == "length":
            parts.append("cut at max_tokens")
    if turn.context_length:
        parts.append(f"context {turn.prompt_tokens}/{turn.context_length} "
                     f"({100 * turn.prompt_tokens / turn.context_length:.0f}%)")
    return " · ".join(parts)


def info_dict(turn: Turn) -> dict[str, Any]:
    """Usage and timing as a JSON-ready dict (for --json)."""
    done = turn.done
    usage = done.usage if done else None
    return {
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else None,
        "ttft_ms": round(done.ttft_s * 1000, 1) if done and done.ttft_s is not None else None,
        "tokens_per_s": round(done.tokens_per_s, 2) if done and done.tokens_per_s else None,
        "finish_reason": done.finish_reason if done else None,
        "context_length": turn.context_length,
        "context_cuts": turn.cuts,
    }
