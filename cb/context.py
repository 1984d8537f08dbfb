"""Prompt assembly: what the model sees each turn, re-read fresh, in a stable order so prefix reuse hits.

    system   cb's instructions + the edit tools' instructions (tools.INSTRUCTIONS)
             then the context sections, each only when present:
             open files (the project's AGENTS.md / CONVENTIONS.md first; numbered lines, version hash) ·
             agentshell tab tails · cwd + git summary · piped stdin
    then     the conversation so far, and the new user message.

Budgets: the prompt may use the server's context length minus the room reserved for the answer (max_tokens,
at most a quarter of the context; the answer may also use whatever the prompt leaves). The system prompt and
the new message are mandatory; the other sources share what is left by weight (files 45%, stdin 20%,
conversation 20%, tabs 10%, workspace 5%), and a source needing less than its share passes the rest on.
What does not fit is cut visibly, both in the prompt and in the report the REPL shows: "[… 120 lines of
app.py not shown]".

Counting: each piece (system prompt, message, source) is counted once with the server's tokenizer (`count`
is `Backend.count_tokens`; `Counter` keeps counts by content, across cb runs too). A cut is not counted
again: its tokens are estimated from its source's count by the share of characters kept (within ±8% of
SmolLM2's count on cb's own sources), aiming 5% under its budget (a source cut to no lines at all is
counted: its frame alone). The prompt's size is the sum of its pieces; when the server still finds the
prompt too long, cb.chat assembles it again with the server's count as a `correction`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import subprocess
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tools.hashing import file_version
from tools.numbered import file_block, numbered_lines
from tools.textfile import NotEditable

SYSTEM_PROMPT = """You are cb, a coding assistant in the user's terminal. Answer briefly and concretely, in Markdown.
The user's open files are shown below with line numbers; the numbers are not part of the files.
When a change to a file is wanted, propose it with the edit tools described below, never by reprinting the file."""

SHARES = {"files": 0.45, "stdin": 0.20, "conversation": 0.20, "tabs": 0.10, "workspace": 0.05}
MESSAGE_OVERHEAD = 8  # chat-template tokens around each message (role markers, separators)
CUT_AIM = 0.95  # a cut source aims at this share of its budget: its size is an estimate


class ContextError(ValueError):
    """The mandatory part of the prompt does not fit; the message is one line for the user."""


@dataclass
class Source:
    """One piece of context: a label for the user, its lines, and how it is cut (keep the head or the tail).

    An open file carries its bytes (`data`), and its section is `tools.numbered.file_block`'s (its `lines`
    are the numbered lines, for measuring a cut); any other source is `header`, lines, `footer`.
    """

    kind: str
    label: str
    header: str
    lines: list[str]
    keep: str = "head"
    footer: str = ""
    cut_lines: int = 0
    data: bytes | None = None

    def text(self) -> str:
        shown = len(self.lines) - self.cut_lines
        if self.data is not None:
            return file_block(self.label, self.data, 1, shown)
        body = self.lines[self.cut_lines:] if self.keep == "tail" else self.lines[:shown]
        if self.cut_lines:
            note = f"[… {self.cut_lines} {'earlier ' if self.keep == 'tail' else ''}lines of {self.label} not shown]"
            body = [note, *body] if self.keep == "tail" else [*body, note]
        return "\n".join((self.header, *body, self.footer))


@dataclass
class Assembled:
    messages: list[dict[str, str]]
    prompt_tokens: int
    context_length: int
    max_tokens: int
    cuts: list[str] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)
    correction: int = 0


# --- gathering -----------------------------------------------------------------------------------------


def file_source(path: Path, display: str) -> Source:
    """An open file as the model sees it (tools.numbered's format: header with version, numbered lines)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Source("files", display, f'<file path="{display}">', [f"[cannot read {display}: {exc.strerror}]"],
                      footer="</file>")
    try:
        body = numbered_lines(data)
    except NotEditable as exc:
        return Source("files", display, f'<file path="{display}" version="{file_version(data)}">',
                      [f"[{display} {exc}; not shown]"], footer="</file>")
    return Source("files", display, "", body.split("\n") if body else [], data=data)


def workspace_source(cwd: Path, project: Path) -> Source:
    """The cwd, the project root and a short git summary (branch, last commit, changed files)."""
    lines = [f"cwd: {cwd}", f"project: {project}"]

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True, timeout=3)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.rstrip() if out.returncode == 0 else ""

    if (project / ".git").exists():
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        last = git("log", "-1", "--format=%h %s")
        lines.append(f"git: branch {branch or '?'}" + (f", last commit {last}" if last else ", no commits"))
        status = git("status", "--short", "--untracked-files=normal")
        changed = status.splitlines()
        if changed:
            lines.append(f"changed files ({len(changed)}):")
            lines.extend(changed)
    return Source("workspace", "the workspace summary", "<workspace>", lines, footer="</workspace>")


def stdin_source(text: str) -> Source:
    return Source("stdin", "piped input", "<stdin>", text.splitlines(), footer="</stdin>")


def tab_source(name: str, tail: str) -> Source:
    return Source("tabs", f"tab {name}", f'<tab name="{name}">', tail.splitlines(), keep="tail", footer="</tab>")


# --- budgeting -----------------------------------------------------------------------------------------


class Counter:
    """Token counts by content hash, so a turn only asks the server about text that changed.

    With a `store` path the counts persist across cb processes (one JSON object of hash → count, kept to
    the newest STORE_LIMIT entries), so a one-shot `cb` only tokenizes what is new since the last run: the
    system prompt, unchanged files and the workspace summary are counted once per model.
    """

    STORE_LIMIT = 4096

    def __init__(self, count: Callable[[str], int], store: Path | None = None) -> None:
        self._count = count
        self._store = store
        self._cache: dict[str, int] = {}
        self._dirty = False
        if store is not None:
            try:
                data = json.loads(store.read_text(encoding="utf-8"))
                self._cache = {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._cache = {}

    def __call__(self, text: str) -> int:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
        if key not in self._cache:
            self._cache[key] = self._count(text)
            self._dirty = True
        return self._cache[key]

    def save(self) -> None:
        """Write the counts back to the store (atomically; a failure only costs a later re-count)."""
        if self._store is None or not self._dirty:
            return
        items = list(self._cache.items())[-self.STORE_LIMIT:]
        try:
            self._store.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._store.with_name(f".{self._store.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(dict(items)), encoding="utf-8")
            os.replace(tmp, self._store)
            self._dirty = False
        except OSError:
            pass


def _fit(source: Source, budget: int, count: Counter) -> int:
    """Cut `source`'s lines (head or tail kept) until its text fits `budget`; return its token count.

    Only the whole text is counted; a cut's count is estimated from it (see the module docstring).
    """
    full = source.text()
    need = count(full)
    if need <= budget:
        return need
    n = len(source.lines)
    ordered = reversed(source.lines) if source.keep == "tail" else source.lines
    chars = [0, *itertools.accumulate(len(line) + 1 for line in ordered)]  # characters of the first k kept
    per_char = need / len(full)
    keep = max(bisect_right(chars, budget * CUT_AIM / per_char - (len(full) - chars[-1])) - 1, 0)
    while keep > 0:
        source.cut_lines = n - keep
        used = math.ceil(len(source.text()) * per_char)
        if used <= budget:
            return used
        keep -= 1
    source.cut_lines = n
    return count(source.text())  # no lines left: the frame alone, whose density is nothing like its lines'


def _shares(needs: dict[str, int], budget: int) -> dict[str, int]:
    """Water-filling: each kind gets its weighted share; what a kind does not need goes to the others."""
    grant: dict[str, int] = {}
    pending = {k: v for k, v in needs.items() if v > 0}
    left = budget
    while pending:
        weight = sum(SHARES[k] for k in pending)
        fair = {k: int(left * SHARES[k] / weight) for k in pending}
        satisfied = [k for k in pending if needs[k] <= fair[k]]
        if not satisfied:
            grant.update(fair)
            break
        for k in satisfied:
            grant[k] = needs[k]
            left -= needs[k]
            del pending[k]
    return grant


def assemble(*, question: str, history: list[dict[str, str]], sources: list[Source], count: Callable[[str], int],
             context_length: int, max_tokens: int, extra_system: str = "", instructions: str = "",
             correction: int = 0) -> Assembled:
    """Build the messages for one turn within the context window (see the module docstring).

    `correction`: tokens the server counted beyond this estimate on a try it refused as too long; they are
    added to the estimate, so the sources get that much less room.
    """
    counter = count if isinstance(count, Counter) else Counter(count)
    cuts: list[str] = []
    system_head = "\n\n".join(x for x in (SYSTEM_PROMPT, instructions, extra_system) if x)
    reserve = min(max_tokens, context_length // 4)
    budget = context_length - reserve - MESSAGE_OVERHEAD * 2 - correction
    fixed = counter(system_head) + counter(question)
    if fixed > budget and instructions:
        # a tiny context: answer without the edit tools rather than not at all, and say so
        system_head = "\n\n".join(x for x in (SYSTEM_PROMPT, extra_system) if x)
        fixed = counter(system_head) + counter(question)
        cuts.append(f"edit instructions not shown (the {context_length}-token context is too small for them)")
    if fixed > budget:
        raise ContextError(f"the message and system prompt need {fixed} tokens, but only {budget} of the "
                           f"{context_length}-token context are left after reserving {reserve} for the answer")
    by_kind: dict[str, list[Source]] = {}
    for s in sources:
        by_kind.setdefault(s.kind, []).append(s)
    needs = {k: sum(counter(s.text()) + 2 for s in group) for k, group in by_kind.items()}
    needs["conversation"] = sum(counter(m["content"]) + MESSAGE_OVERHEAD for m in history)
    grants = _shares(needs, budget - fixed)

    report: list[tuple[str, int]] = []
    for kind, group in by_kind.items():
        left = grants.get(kind, 0)
        used_by: dict[int, int] = {}
        # smallest first, each taking at most an even split of what is left: a source needing less passes the
        # rest on, so only sources bigger than their share are cut (the prompt keeps the group's order)
        for n, i in enumerate(sorted(range(len(group)), key=lambda i: counter(group[i].text()))):
            used_by[i] = _fit(group[i], max(left // (len(group) - n) - 2, 0), counter) + 2
            left -= used_by[i]
        for i, s in enumerate(group):
            report.append((s.label, used_by[i]))
            if s.cut_lines:
                cuts.append(f"{s.cut_lines} {'earlier ' if s.keep == 'tail' else ''}lines of {s.label} not shown")
    kept: list[dict[str, str]] = []
    room = grants.get("conversation", 0)
    note = ""
    if needs["conversation"] > room:  # some will be cut: keep room for the note that says so
        note = f"[… {len(history)} earlier messages of this conversation not shown]"
        room -= counter(note) + 2
    for m in reversed(history):
        cost = counter(m["content"]) + MESSAGE_OVERHEAD
        if cost > room:
            break
        kept.insert(0, m)
        room -= cost
    conversation = sum(counter(m["content"]) + MESSAGE_OVERHEAD for m in kept)
    sections = [s.text() for kind in ("files", "tabs", "workspace", "stdin") for s in by_kind.get(kind, [])]
    if len(kept) < len(history):
        cuts.append(f"{len(history) - len(kept)} earlier messages of this conversation not shown")
        sections.append(f"[… {len(history) - len(kept)} earlier messages of this conversation not shown]")
        conversation += counter(note) + 2
    system = "\n\n".join([system_head, *sections])
    messages = [{"role": "system", "content": system}, *kept, {"role": "user", "content": question}]
    prompt_tokens = fixed + MESSAGE_OVERHEAD * 2 + sum(used for _, used in report) + conversation + correction
    report.append(("conversation", sum(counter(m["content"]) + MESSAGE_OVERHEAD for m in kept)))
    return Assembled(messages, prompt_tokens, context_length,
                     max(1, min(max_tokens, context_length - prompt_tokens)), cuts, report, correction)
