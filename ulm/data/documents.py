"""A source file → its documents, each with a content hash; or the reason it was skipped.

- A `.jsonl` file holds one record per line: `{"messages": [...]}` (an OpenAI chat transcript: each message
  a role among system/user/assistant/tool and a content string, or a list of `{"type": "text", "text": ...}`
  parts) or `{"text": "..."}`. Blank lines are ignored; any other line is a DataError naming file and line.
- Any other file is one text document: UTF-8 text, skipped (with a reason) when it is a symlink, empty,
  binary (a NUL byte in its first 8 KiB), not UTF-8, or larger than `max_bytes`. A file that cannot be
  read is a DataError.
- The content hash is sha256 over a kind tag and the text (for chats, the canonical JSON of the messages),
  so the same text given as a file and as a `{"text"}` record is one document, and a chat never equals a text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ulm.data.errors import DataError
from ulm.data.sources import SourceFile

ROLES = ("system", "user", "assistant", "tool")
BINARY_PROBE = 8192

Message = dict[str, str]


@dataclass(frozen=True)
class Document:
    """One training document: a text, or a chat transcript (normalised messages)."""

    kind: str  # "text" or "chat"
    text: str  # the text (kind text); "" for chats
    messages: tuple[Message, ...]  # the transcript (kind chat); () for texts
    hash: str  # sha256 hex of the content (see the module docstring)
    file: SourceFile
    line: int | None  # 1-based line of a .jsonl record; None for a whole file


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why."""

    file: SourceFile
    reason: str


def content_hash(kind: str, payload: str) -> str:
    """sha256 hex of a document's kind and content."""
    return hashlib.sha256(f"{kind}\0{payload}".encode("utf-8", "surrogatepass")).hexdigest()


def text_document(text: str, file: SourceFile, line: int | None = None) -> Document:
    return Document("text", text, (), content_hash("text", text), file, line)


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" and
                                       isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    raise DataError(f"{where}: a message's content must be a string or a list of text parts")


def chat_document(messages: Any, file: SourceFile, line: int | None, where: str) -> Document:
    """A chat transcript, validated and normalised to role + content strings."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: \"messages\" must be a non-empty list")
    normal: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise DataError(f"{where}: message {i} needs a role among {', '.join(ROLES)}")
        normal.append({"role": m["role"], "content": _content(m.get("content"), f"{where}: message {i}")})
    if not any(m["role"] == "assistant" for m in normal):
        raise DataError(f"{where}: the transcript has no assistant message (nothing to train on)")
    payload = json.dumps(normal, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return Document("chat", "", tuple(normal), content_hash("chat", payload), file, line)


def _read(file: SourceFile) -> bytes:
    try:
        return file.path.read_bytes()
    except OSError as e:
        raise DataError(f"{file.path}: cannot read ({e.strerror or type(e).__name__})") from None


def _records(text: str, file: SourceFile) -> list[Document]:
    docs = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{file.path}:{n}"
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg})") from None
        if isinstance(record, dict) and "messages" in record:
            docs.append(chat_document(record["messages"], file, n, where))
        elif isinstance(record, dict) and isinstance(record.get("text"), str):
            if record["text"].strip():
                docs.append(text_document(record["text"], file, n))
        else:
            raise DataError(f"{where}: a JSONL line must be an object with \"messages\" (a chat) or \"text\"")
    return docs


def read_documents(file: SourceFile, max_bytes: int) -> list[Document] | Skipped:
    """The documents of one file, or why it was skipped; DataError when it cannot be read or parsed."""
    if file.path.is_symlink():
        return Skipped(file, "symlink")
    try:
        size = file.path.stat().st_size
    except OSError as e:
        raise DataError(f"{file.path}: cannot read ({e.strerror or type(e).__name__})") from None
    if size > max_bytes:
        return Skipped(file, f"larger than {max_bytes} bytes")
    data = _read(file)
    if b"\0" in data[:BINARY_PROBE]:
        return Skipped(file, "binary")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Skipped(file, "not UTF-8")
    if not text.strip():
        return Skipped(file, "empty")
    if file.path.suffix.lower() == ".jsonl":
        docs = _records(text, file)
        return docs if docs else Skipped(file, "empty")
    return [text_document(text, file)]
