"""How cb asks for an answer that may propose edits: the request shaped for the server, and the repair round.
`cb ask`, the REPL (through cb.chat) and `cb bench edits` (through cb.editbench.wiring) take this one path,
so the benchmark measures what users get.

    mode = edit_mode(settings.grammar, backend.features())   # "grammar" | "tools" | "plain"
    shape = request_shape(mode, open_files, edit=False)        # the edit instructions + extra body fields
    for event in rounds(first_stream, ask_again=..., check=..., retries=settings.edit_retries):
        ...                                                    # Delta | Repair | Done

The modes:
- grammar (the server is ulm serve and says it constrains decoding; or `grammar = on`): the blocks of
  tools.format are taught and the request carries `grammar`, cb.grammar's grammar of the open files, so the
  model can only write blocks about those files, with their paths and versions and lines they hold;
- tools (a server that takes OpenAI tool calls, and no grammar): TOOL_CALL_INSTRUCTIONS, `tools` =
  tools.tool_schemas(), `tool_choice` "auto"; the calls (tools.parse_tool_calls) are written into the
  answer as blocks (tools.render), so the diff, the confirmation, `cb apply` and the session read one format;
- plain: the blocks are taught, nothing else is sent.

An edit request (`edit=True`: `cb ask --edit`, `/edit` in the REPL, every `cb bench edits` task) is one whose
answer must change a file: its grammar makes the answer open with an edit block, and in every mode an answer
that proposes none is a problem the repair round sends back.

The repair round: when an answer's edits cannot be applied (a block that does not parse, a copied line that
is missing or ambiguous, a stale version: `problems`, whose messages are written for the model), the errors
go back to the model, once per allowed retry, and its next answer replaces the first. The conversation
sent is the first round's (re-read by the caller) plus the answer and a user message listing the errors
(`follow_up`); it is skipped when it would not leave the answer room in the context.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cb.backend import ContextOverflow, Delta, Done, RequestError, ServerFeatures
from cb.context import MESSAGE_OVERHEAD

MIN_REPAIR_TOKENS = 128  # a repair round that leaves the answer less room than this is not sent


@dataclass(frozen=True)
class Shape:
    """How one request asks for edits: `mode`, the edit instructions for the system prompt, and the fields
    merged into the request body."""

    mode: str
    instructions: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Repair:
    """Event: the answer so far cannot be applied, for these `errors`; the model is asked again and the
    answer that follows replaces `answer`."""

    errors: tuple[str, ...]
    answer: str


def edit_mode(setting: str, features: ServerFeatures) -> str:
    """The mode for a `grammar` setting (auto | on | off) against a server with `features`: a grammar where
    the server takes one (always, with on), else tool calls where a server other than ulm takes them, else
    plain prompting."""
    if setting == "on" or (setting == "auto" and features.grammar):
        return "grammar"
    return "tools" if features.tools else "plain"  # ulm serve is never detected as a tools server


def request_shape(mode: str, files: Iterable[Any], *, edit: bool = False) -> Shape:
    """The Shape of a request in `mode` about `files` (tools.structure.OpenFile: path as shown, version, lines);
    `edit`: the answer must propose an edit."""
    from tools.format import INSTRUCTIONS, TOOL_CALL_INSTRUCTIONS

    if mode == "grammar":
        from cb.grammar import edit_grammar

        return Shape(mode, INSTRUCTIONS, {"grammar": edit_grammar(files, edit=edit)})
    if mode == "tools":
        from tools import tool_schemas

        return Shape(mode, TOOL_CALL_INSTRUCTIONS, {"tools": tool_schemas(), "tool_choice": "auto"})
    return Shape("plain", INSTRUCTIONS)


def open_files(sources: Iterable[tuple[str, bytes]]) -> list[Any]:
    """OpenFiles for the grammar from (path as shown to the model, bytes) of the files the prompt shows."""
    from tools.structure import OpenFile

    return [OpenFile.from_bytes(path, data) for path, data in sources]


def refused(exc: BaseException, shape: Shape) -> bool:
    """Whether `exc` is the server refusing a field this shape sent (a 4xx/5xx answer naming it)."""
    if not isinstance(exc, RequestError) or not shape.extra or exc.status not in (400, 422, 500, 501):
        return False
    detail = exc.detail.lower()
    return any(name in detail for name in shape.extra) or (shape.mode == "tools" and "jinja" in detail)


NO_EDIT = "your answer proposes no edit, and the request asks for a change: write it as edit blocks"


def problems(answer: str, root: Path, *, edit: bool = False) -> list[str]:
    """Why the edits of `answer` cannot be applied under `root`: blocks that do not parse, then what the plan
    refuses (missing or ambiguous copied lines, stale versions, paths); with `edit`, that it proposes none.
    [] when they can (or, without `edit`, when there are none)."""
    from tools import parse_proposals

    parsed = parse_proposals(answer)
    errors = [f"answer {e}" for e in parsed.errors]
    edits = [p for p in parsed.proposals if p.kind != "run"]
    if edit and not edits and not errors:
        return [NO_EDIT]
    if edits:  # the plan's modules are imported only for an answer that proposes edits (cb's start-up time)
        from tools import plan_batch

        errors += list(plan_batch(edits, root).errors)
    return errors


def repair_message(errors: Sequence[str], mode: str) -> str:
    """The user message of a repair round: what failed, and what to write instead."""
    listed = "\n".join(f"- {e}" for e in errors)
    again = ("Call the edit tools again with the corrected edits" if mode == "tools"
             else "Write the corrected edit blocks again")
    return (f"None of your edits were applied, because:\n{listed}\n{again}: all of them, since nothing from your "
            "last answer was applied. Copy the lines exactly from the files as shown above.")


def follow_up(messages: Sequence[Mapping[str, str]], prompt_tokens: int, max_tokens: int, context_length: int,
              answer: str, errors: Sequence[str], mode: str,
              count: Callable[[str], int]) -> tuple[list[dict[str, str]], int] | None:
    """The messages and answer budget of a repair round after `messages` (of `prompt_tokens`), or None when
    the answer would have less than min(max_tokens, MIN_REPAIR_TOKENS) tokens of room."""
    note = repair_message(errors, mode)
    used = prompt_tokens + count(answer) + count(note) + 2 * MESSAGE_OVERHEAD
    budget = min(max_tokens, context_length - used)
    if budget < min(max_tokens, MIN_REPAIR_TOKENS):
        return None
    return [*map(dict, messages), {"role": "assistant", "content": answer}, {"role": "user", "content": note}], budget


def tool_call_text(calls: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """An answer's tool calls as blocks of text (tools.render), and the calls that cannot be read, as errors
    (also named in the text, so the user sees them)."""
    if not calls:
        return "", []
    from tools import parse_tool_calls, render

    parts: list[str] = []
    errors: list[str] = []
    for call in calls:
        result = parse_tool_calls([call])
        parts += [render(p) for p in result.proposals]
        for e in result.errors:
            errors.append(f"the tool call {e.block} {e.message}")
            parts.append(f"[the tool call {e.block} could not be read: {e.message}]")
    return "\n\n".join(parts) + "\n", errors


def rounds(first: Iterator[Delta | Done], *, ask_again: Callable[[str, list[str]], Iterator[Delta | Done] | None],
           check: Callable[[str], list[str]], retries: int) -> Iterator[Delta | Repair | Done]:
    """The events of an answer and of up to `retries` repair rounds.

    Each round's events pass through; its tool calls come as one Delta of blocks before its Done. When the
    round's answer has problems (`check(answer)`, plus tool calls that cannot be read), `ask_again(answer,
    errors)` opens the next round's stream (None: no room for one); a Repair event precedes that round, once
    the server has accepted it (a context overflow then ends the exchange with the answer so far). Every
    stream opened is closed, also when the consumer stops early.
    """
    source: Iterator[Delta | Done] | None = first
    events: Iterator[Delta | Done] = first
    try:
        for attempt in itertools.count():
            answer = ""
            done: Done | None = None
            for event in events:
                if isinstance(event, Done):
                    done = event
                    continue
                answer += event.text
                yield event
            text, errors = tool_call_text(done.tool_calls if done else [])
            if text:
                gap = "\n\n" if answer.strip() else ""
                answer += gap + text
                yield Delta(gap + text)
            if done is not None:
                yield done
            if attempt >= retries or not (errors := errors + check(answer)):
                return
            _close(source)
            source = ask_again(answer, errors)
            if source is None:
                return
            try:
                opening = next(source, None)
            except ContextOverflow:
                return
            yield Repair(tuple(errors), answer)
            events = itertools.chain([] if opening is None else [opening], source)
    finally:
        _close(source)


def _close(stream: object) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()
