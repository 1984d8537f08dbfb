"""The one module that touches cb's chat setup, its prompt assembly and the tools package.

The benchmark runs cb's real path, and these parts are moving (a consolidated context assembly, an edit
format where the model copies the lines it changes); everything else in cb.editbench reaches them only
through the functions here, so adapting the benchmark to a change is a change of this module:

    connect(settings)                cb.chat.Chat's backend: the configured server, or the local `ulm serve`
    prompt(workspace, open, request, count=, context_length=, max_tokens=)
                                     cb.context.file_source + cb.context.assemble with the edit instructions,
                                     the open files shown as cb shows them, the request as the user message
    parse(answer)                    tools.parse_proposals
    apply(proposals, workspace, journal_dir)
                                     tools.apply_batch (which plans first), confirmation = accept all
    answer_for(before, after)        an answer in cb's edit format that turns files `before` into `after`
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
           context_length: int, max_tokens: int) -> Prompt:
    """The messages cb sends for `request` with `open_paths` (relative to `workspace`) open, no history."""
    from cb import context
    from cb.chat import edit_instructions

    sources = [context.file_source(workspace / p, p) for p in open_paths]
    built = context.assemble(question=request, history=[], sources=sources, count=count,
                             context_length=context_length, max_tokens=max_tokens, instructions=edit_instructions())
    return Prompt(built.messages, built.prompt_tokens, built.max_tokens, tuple(built.cuts))


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
    """Line edits that turn `old` into `new` (a create when there is no old file)."""
    from tools import CreateFile, InsertAfterEdit, LineReplaceEdit, SingleLineEdit, file_version
    from tools.textfile import TextFile

    if old is None:
        return [CreateFile(path, new.decode("utf-8"))]
    version = file_version(old)
    before, after = TextFile.parse(old).text_lines(), TextFile.parse(new).text_lines()
    out: list[Any] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        content = "".join(line + "\n" for line in after[j1:j2])
        if tag == "insert":
            out.append(InsertAfterEdit(path, version, i1, content))
        elif tag == "replace" and i2 - i1 == 1 and j2 - j1 == 1:
            out.append(SingleLineEdit(path, version, i1 + 1, content))
        elif tag in ("replace", "delete"):
            out.append(LineReplaceEdit(path, version, i1 + 1, i2, content))
    return out


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
