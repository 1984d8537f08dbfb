"""The fixed texts the benchmark feeds every engine: prose and code (`TEXT`), long enough for a 512-token
prefill, and code alone (`CODE`).

The accuracy figures (top-1 agreement of the fast mode with the exact one under teacher forcing) read the
first 256 tokens of `TEXT` and of `CODE` (what a coding model is mostly asked about); the prefill reads
512 of `TEXT` and the decode prompt 64. When a tokenizer packs a text into fewer tokens than asked for,
`take` repeats it, so every engine gets the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence

TEXT = """\
A terminal coding companion lives where the code lives: on a cloud machine reached over ssh, or on the
laptop in front of you. It keeps the files you are working on and the processes you are running as
context, asks a small language model for help, and proposes line edits that you confirm before anything
is written. The model runs locally, on the CPU, so every millisecond spent per token is felt while the
answer streams in. That is why the engine keeps a static key/value cache, avoids allocations in the
decode loop, and stores its weights in four bits with a scale and a zero for each group of thirty-two.

Here is the kind of code it is asked about most days:

    def read_config(path: Path) -> dict[str, str]:
        \"\"\"Parse a simple KEY=VALUE file, skipping blank lines and comments.\"\"\"
        values: dict[str, str] = {}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
            values[key.strip()] = value.strip()
        return values

A user might ask why the function raises on a line without an equals sign, whether it should accept
quoted values, or how to test it. A good answer names the line, explains the behaviour, and proposes a
small change with a test: write a temporary file with three keys, a comment and a blank line, call the
function, and compare the result with the expected dictionary. Another test checks that the error
message names the file and the line number, because that is what a person needs when the file is long.

Long-running processes are the other half of the context. A development server prints a traceback, a
test runner reports two failures, a build stalls on a missing header. The companion reads the last few
hundred lines of each tab, strips the escape sequences that colour the output, and puts the plain text
in the prompt next to the files. When it suggests a command, the command waits for confirmation too:
nothing runs, and nothing is written, until the person at the keyboard says yes.

Speed matters in three places. Loading the model should take a second or two, not twenty, so the
weights are converted once and cached in the layout the engine wants. Reading a long prompt should be
fast, because the prompt holds whole files; that is the prefill, measured in tokens per second over
five hundred and twelve tokens. Writing the answer should keep up with reading, which for most people
means a few dozen tokens per second; that is the decode, measured over one hundred and twenty-eight new
tokens after a short prompt. The time to the first token is what a person notices first of all.
"""

CODE = '''\
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Session:
    """One chat session: its messages and the files it has open."""

    name: str
    messages: list[dict[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def add(self, role: str, content: str) -> None:
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"unknown role {role!r}")
        self.messages.append({"role": role, "content": content})

    def last_reply(self) -> str | None:
        for message in reversed(self.messages):
            if message["role"] == "assistant":
                return message["content"]
        return None


def save(session: Session, directory: Path) -> Path:
    """Write the session atomically: a temporary file in the same directory, then a rename."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{session.name}.json"
    fd, tmp = tempfile.mkstemp(prefix=".session-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"messages": session.messages, "files": session.files}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(directory: Path, name: str) -> Session:
    path = directory / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Session(name)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a session file ({exc.msg} at line {exc.lineno})") from None
    return Session(name, list(data.get("messages", [])), list(data.get("files", [])))


def count_tokens(text: str, per_token: float = 3.5) -> int:
    """A rough token count for budgeting the prompt: characters over an average token length."""
    return max(1, round(len(text) / per_token))


def trim(messages: list[dict[str, str]], budget: int) -> list[dict[str, str]]:
    """The newest messages that fit in `budget` tokens, the system message always kept."""
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    used = sum(count_tokens(m["content"]) for m in system)
    kept: list[dict[str, str]] = []
    for message in reversed(rest):
        cost = count_tokens(message["content"])
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    return system + kept[::-1]
'''


def take(ids: Sequence[int], n: int) -> list[int]:
    """The first n ids of `ids`, repeated end to end when it is shorter."""
    if not ids:
        raise ValueError("the benchmark text encoded to no tokens")
    reps = -(-n // len(ids))
    return (list(ids) * reps)[:n]
