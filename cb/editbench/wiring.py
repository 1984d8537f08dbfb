"""The one module that touches cb's chat setup, its prompt assembly and the tools package.

The benchmark runs cb's real path, and these parts are moving (a consolidated context assembly, an edit
format where the model copies the lines it changes); everything else in cb.editbench reaches them only
through the functions here, so adapting the benchmark to a change is a change of this module:

    connect(settings)                cb.chat.Chat's backend: the configured server, or the local `ulm serve`
    prompt(workspace, open, request, count=, context_length=, max_tokens=, instructions=)
                                     cb.context.file_source + cb.context.assemble with the edit instructions,
                                     the open files shown as cb shows them, the request as the user message
    edit_mode(setting, conn)         cb.exchange.edit_mode for the connected server (grammar | tools | plain)
    shape(mode, workspace, open)     cb.exchange.request_shape: the instructions and extra body fields
    ask(conn, prompt, shape, ...)    the answer through cb.exchange.rounds, as cb ask and the REPL get it:
                                     tool calls written as blocks, repair rounds when the edits fail
    parse(answer)                    tools.parse_proposals
    apply(proposals, workspace, journal_dir)
                                     tools.apply_batch (which plans first), confirmation = accept all
    answer_for(before, after)        an answer in cb's edit format (v2: copied lines) that turns files
                                     `before` into `after`
    reference_answer(task)           the task's solution written as cb asks models to write edits
    transcript(task, ...)            the chat a training example is made of: prompt + reference answer
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cb.editbench.tasks import Task, write_files


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    prompt_tokens: int  # cb's own count (the server's usage, when it reports one, is exact)
    max_tokens: int  # what the answer may use (max_tokens, less what the prompt leaves no room for)
    cuts: tuple[str, ...]  # what did not fit the context
    context_length: int = 0  # the context it was assembled for


@dataclass(frozen=True)
class Parsed:
    proposals: tuple[Any, ...]
    errors: tuple[str, ...]


@dataclass(frozen=True)
class Applied:
    status: str  # applied | refused | failed | nothing | no-edits (tools.ApplyResult's, plus no-edits)
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass
class Connection:
    """A ready backend: cb's client, the served model's context length, a token counter."""

    backend: Any  # cb.backend.Backend
    context_length: int
    count: Callable[[str], int]
    local: bool
    close: Callable[[], None]


def connect(settings: Any) -> Connection:
    """Connect as cb's chat does: the configured base URL, else the local `ulm serve` (started if needed,
    with a spinner on a terminal)."""
    from cb import context
    from cb.chat import Chat
    from cb.render import Out
    from cb.session import Session

    chat = Chat(settings, Session(id="editbench", project=tempfile.gettempdir()), Out())
    try:
        backend = chat.backend()
        length = chat.context_length()
    except BaseException:
        chat.close()
        raise
    return Connection(backend, length, context.Counter(backend.count_tokens), chat.local, chat.close)


def prompt(workspace: Path, open_paths: Sequence[str], request: str, *, count: Callable[[str], int],
           context_length: int, max_tokens: int, instructions: str | None = None) -> Prompt:
    """The messages cb sends for `request` with `open_paths` (relative to `workspace`) open, no history;
    `instructions` are the edit instructions (default: the blocks, as plain prompting teaches them)."""
    from cb import context
    from tools.format import INSTRUCTIONS

    sources = [context.file_source(workspace / p, p) for p in open_paths]
    built = context.assemble(question=request, history=[], sources=sources, count=count,
                             context_length=context_length, max_tokens=max_tokens,
                             instructions=INSTRUCTIONS if instructions is None else instructions)
    return Prompt(built.messages, built.prompt_tokens, built.max_tokens, tuple(built.cuts), context_length)


def edit_mode(setting: str, conn: Connection) -> str:
    """How edits are asked for with `grammar = setting` against the connected server."""
    from cb import exchange

    return exchange.edit_mode(setting, conn.backend.features())


def shape(mode: str, workspace: Path, open_paths: Sequence[str]) -> Any:
    """The cb.exchange.Shape of a request in `mode` with `open_paths` (relative to `workspace`) open."""
    from cb import exchange

    files = exchange.open_files((p, (workspace / p).read_bytes()) for p in open_paths) if mode == "grammar" else []
    return exchange.request_shape(mode, files, edit=True)  # every task asks for a change


@dataclass(frozen=True)
class Answered:
    """The final answer, every round's Done event, and the repairs (cb.exchange.Repair) it took."""

    text: str
    rounds: tuple[Any, ...]
    repairs: tuple[Any, ...]


def ask(conn: Connection, built: Prompt, shaped: Any, *, temperature: float, retries: int, workspace: Path,
        extra: Mapping[str, Any] | None = None) -> Answered:
    """The answer to `built` as cb's chat gets it (cb.exchange.rounds): the shape's fields (and `extra`) in
    every request, the edits checked against `workspace`, up to `retries` repair rounds."""
    from cb import exchange
    from cb.backend import Delta, Done

    body = {**shaped.extra, **(extra or {})}

    def ask_again(answer: str, errors: list[str]) -> Any:
        follow = exchange.follow_up(built.messages, built.prompt_tokens, built.max_tokens, built.context_length,
                                    answer, errors, shaped.mode, conn.count)
        if follow is None:
            return None
        messages, budget = follow
        return conn.backend.chat(messages, max_tokens=budget, temperature=temperature, extra=body)

    first = conn.backend.chat(built.messages, max_tokens=built.max_tokens, temperature=temperature, extra=body)
    text, dones, repairs = "", [], []
    for event in exchange.rounds(first, ask_again=ask_again, check=lambda a: exchange.problems(a, workspace, edit=True),
                                 retries=retries):
        if isinstance(event, Delta):
            text += event.text
        elif isinstance(event, Done):
            dones.append(event)
        else:
            repairs.append(event)
            text = ""
    return Answered(text, tuple(dones), tuple(repairs))


def parse(answer: str) -> Parsed:
    from tools import parse_proposals

    result = parse_proposals(answer)
    return Parsed(result.proposals, tuple(str(e) for e in result.errors))


def apply(proposals: Sequence[Any], workspace: Path, journal_dir: Path) -> Applied:
    """Plan and apply the file edits among `proposals` under `workspace`, all or nothing."""
    from tools import Journal, accept_all, apply_batch

    edits = [p for p in proposals if p.kind != "run"]
    if not edits:
        return Applied("no-edits", ("the answer proposes no file edit",))
    result = apply_batch(edits, workspace, journal=Journal(journal_dir), confirm=accept_all)
    return Applied(result.status, tuple(result.errors), tuple(result.plan.warnings))


def _proposals_for(path: str, old: bytes | None, new: bytes) -> list[Any]:
    """Edits of format v2 that turn `old` into `new` (a create when there is no old file): each difflib change
    becomes a replace or an insert whose copied lines occur once in the file (widened by the lines around
    it until they do); changes whose copied lines would overlap become one replace."""
    from tools import AnchoredInsertEdit, CreateFile, SearchReplaceEdit, file_version
    from tools.textfile import TextFile

    if old is None:
        return [CreateFile(path, new.decode("utf-8"))]
    version = file_version(old)
    before, after = TextFile.parse(old).text_lines(), TextFile.parse(new).text_lines()
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    changes = [_Change(i1, i2, after[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    merged: list[_Edit] = []
    for edit in (_anchored(before, c) for c in changes):
        if merged and edit.form not in ("top", "end") and merged[-1].form not in ("top", "end") \
                and edit.start < merged[-1].end:
            edit = _Edit("replace", merged[-1].start, max(edit.end, merged[-1].end), merged[-1].changes + edit.changes)
            merged.pop()
        merged.append(edit)
    out: list[Any] = []
    for edit in merged:
        copied = _text(before[edit.start:edit.end])
        if edit.form == "replace":
            out.append(SearchReplaceEdit(path, version, copied, _text(edit.result(before))))
        else:
            content = _text(edit.changes[0].new)
            out.append(AnchoredInsertEdit(path, version, edit.form, "" if edit.form in ("top", "end") else copied,
                                          content))
    return out


@dataclass(frozen=True)
class _Change:
    """Lines [start, end) of the old file become `new` (start == end: an insertion there)."""

    start: int
    end: int
    new: list[str]


@dataclass(frozen=True)
class _Edit:
    """One edit: its form (replace | after | before | top | end), the old lines [start, end) it copies, and
    the changes it makes."""

    form: str
    start: int
    end: int
    changes: list[_Change]

    def result(self, before: Sequence[str]) -> list[str]:
        """Lines [start, end) with the changes made."""
        out, at = [], self.start
        for change in self.changes:
            out += [*before[at:change.start], *change.new]
            at = change.end
        return out + list(before[at:self.end])


def _anchored(before: Sequence[str], change: _Change) -> _Edit:
    """The edit for `change` whose copied lines occur once in `before`."""
    n = len(before)
    if change.start == change.end:
        if change.start == 0:
            return _Edit("top", 0, 0, [change])
        if change.start == n:
            return _Edit("end", n, n, [change])
        for start in range(change.start - 1, -1, -1):  # after: lines ending just above the insertion
            if _occurrences(before, before[start:change.start]) == 1:
                return _Edit("after", start, change.start, [change])
        for end in range(change.start + 1, n + 1):  # before: lines starting just below it
            if _occurrences(before, before[change.start:end]) == 1:
                return _Edit("before", change.start, end, [change])
    start, end = change.start, max(change.end, change.start + 1)
    while _occurrences(before, before[start:end]) != 1:  # widen below, then above, in turn
        if end < n and (end - change.end <= change.start - start or start == 0):
            end += 1
        else:
            start -= 1
    return _Edit("replace", start, end, [change])


def _occurrences(lines: Sequence[str], run: Sequence[str]) -> int:
    k = len(run)
    return sum(1 for i in range(len(lines) - k + 1) if lines[i:i + k] == run)


def _text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def answer_for(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> str:
    """An answer in cb's edit format that turns the files `before` into `after` (for each path of `after`;
    one missing from `before` is created)."""
    from tools import render

    blocks = [render(p) for path in after for p in _proposals_for(path, before.get(path), after[path])]
    return "\n\n".join(blocks) + "\n"


def reference_answer(task: Task) -> str:
    """The task's solution as an answer in cb's edit format (what a perfect model would write)."""
    return answer_for(task.files, task.solution)


def transcript(task: Task, count: Callable[[str], int] = lambda text: (len(text) + 3) // 4,
               context_length: int = 2048, max_tokens: int = 512) -> list[dict[str, str]]:
    """A training chat for `task`: cb's prompt for it, then the reference answer as the assistant's message
    (`count` is the tokenizer's length function; the default is cb's estimate of 4 characters a token)."""
    with tempfile.TemporaryDirectory(prefix="cb-editbench-") as tmp:
        root = Path(tmp)
        write_files(root, task.files)
        built = prompt(root, task.open, task.request, count=count, context_length=context_length,
                       max_tokens=max_tokens)
    return [*built.messages, {"role": "assistant", "content": reference_answer(task)}]
