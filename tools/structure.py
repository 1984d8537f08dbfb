"""The edit format as data, for a grammar builder: every block as literal pieces and slots, per open file.

cb (issue 15) sends `ulm serve` a grammar per request so the model can only write blocks that name an open
file by its own path and version and copy lines that exist in it. This module says what such a block is,
in the parser's own terms, so the grammar and `tools.parse` cannot drift apart:

    files = [OpenFile.from_bytes("geo.py", data)]
    s = format_structure(files)
    for block in s.blocks:     # replace / insert after / before / top / end / rename per file; create; run
        block.pieces           # (Literal('<replace '), Literal('path="geo.py" version="1d96a4f2"'),
                               #  Literal('>\n'), Literal('<old>\n'), Copied(lines=(...)), Literal('</old>\n'),
                               #  Literal('<new>\n'), Text(forbidden=...), Literal('</new>\n'), Literal('</replace>'))

A block is its pieces in order:
- `Literal(text)`: exactly `text`;
- `Copied(runs)`: one or more consecutive lines of one of `runs`, each followed by "\n": the runs are the
  block's file cut at the lines a part cannot hold (its closing tag, a block opening, a carriage return),
  in file order; `lines` are their distinct lines. The plan further needs the copied lines to occur in the
  file once; a grammar may leave that to the plan, which refuses with a message;
- `Text(forbidden)`: zero or more lines of free text, each followed by "\n", in which the regex
  `forbidden` matches nowhere: the closing tag of its part (`</new>`, also spelled `</NEW>` or
  `</ new >`) and any block opening (`<replace ...>` and the other tags); a create's text holds no part
  tag (`<new>`) either;
- `Line(forbidden)`: one line of text with a non-space character and none of the characters `forbidden`
  (a new file's path, a command);
- `Choice(options)`: exactly one of `options` (the names a rename may start from: `tools.renames.names`);
- `Name(pattern)`: a name matching the regex `pattern` (the new name of a rename).

Between blocks is free prose in which the regex `Structure.block_opening` matches nowhere. The regexes
use no flags, word boundaries or lookarounds (case is spelled out: `[Nn][Ee][Ww]`), so they suit the
Rust `regex` dialect of llguidance as they are.

Every text these pieces allow parses to the one proposal it spells (the tests draw random fillings and
parse them), with one exception: a Text whose first and last lines are a Markdown fence (```) parses to
the lines between them. What `tools.parse` reads beyond this (v1 blocks, other quotes,
case, whitespace) is tolerance, not structure. Files whose path a block cannot quote (holding `<`, `>`,
a line break or both kinds of quote) get no blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tools.format import LONG_NAMES, OPEN_TAG, SECTIONS, TAGS, close_tag, quote_attr
from tools.hashing import file_version
from tools.renames import names
from tools.textfile import TextFile


def _anycase(words: Iterable[str]) -> str:
    """An alternation of `words` in any case, as character classes ([Nn][Ee][Ww]): no regex flags needed."""
    return "(?:" + "|".join("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in w)
                            for w in sorted(words, key=lambda w: (-len(w), w))) + ")"


# The parser's patterns (tools.format) spelled without flags, word boundaries or lookarounds, so that a
# grammar engine's regex dialect (llguidance: Rust `regex` syntax, no lookarounds) takes them as they are.
BLOCK_OPENING = "<" + _anycase({*TAGS, *LONG_NAMES}) + r"(?:[^\w<>][^<>]*)?>"
NAME_PATTERN = "[A-Za-z_][A-Za-z0-9_]*"  # a new name in a rename (ASCII: the grammar's; the plan takes more)
# A create's body that starts with a part (<new>) is read as parts; its text holds none, to stay plain.
_PART = "<" + _anycase(SECTIONS) + r"\s*/?>"


@dataclass(frozen=True)
class OpenFile:
    """A file as the model was shown it: its path as named in the prompt, its version, its decoded lines."""

    path: str
    version: str
    lines: tuple[str, ...]

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> OpenFile:
        return cls(path, file_version(data), tuple(TextFile.parse(data).text_lines()))


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Copied:
    runs: tuple[tuple[str, ...], ...]

    @property
    def lines(self) -> tuple[str, ...]:
        """The distinct lines of the runs, in file order."""
        return tuple(dict.fromkeys(line for run in self.runs for line in run))


@dataclass(frozen=True)
class Text:
    forbidden: str


@dataclass(frozen=True)
class Line:
    forbidden: str


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]


@dataclass(frozen=True)
class Name:
    pattern: str = NAME_PATTERN


Piece = Literal | Copied | Text | Line | Choice | Name


@dataclass(frozen=True)
class Block:
    """One form of block: `form` ("replace", "insert after", …), the open file it is for (None: any), its pieces."""

    form: str
    path: str | None
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class Structure:
    blocks: tuple[Block, ...]
    block_opening: str  # regex that prose and Text must not match anywhere


def format_structure(files: Iterable[OpenFile]) -> Structure:
    """The blocks a model may write about `files` (see the module docstring); create and run need no file."""
    blocks: list[Block] = []
    for f in files:
        if not _quotable(f.path) or not _quotable(f.version):
            continue
        head = Literal(f"path={quote_attr(f.path)} version={quote_attr(f.version)}")
        new = _part("new", Text(_forbidden("new")))
        if old := _copyable(f.lines, "old"):
            blocks.append(Block("replace", f.path, (
                Literal("<replace "), head, Literal(">\n"), *_part("old", Copied(old)), *new, Literal("</replace>"))))
        for where in ("after", "before"):
            if anchor := _copyable(f.lines, where):
                blocks.append(Block(f"insert {where}", f.path, (
                    Literal("<insert "), head, Literal(">\n"), *_part(where, Copied(anchor)), *new,
                    Literal("</insert>"))))
        for at in ("top", "end"):
            blocks.append(Block(f"insert {at}", f.path, (
                Literal("<insert "), head, Literal(f' at="{at}">\n'), *new, Literal("</insert>"))))
        if known := tuple(names(f.lines, f.path)):
            blocks.append(Block("rename", f.path, (
                Literal("<rename "), head, Literal(' from="'), Choice(known), Literal('" to="'), Name(),
                Literal('"/>'))))
    blocks.append(Block("create", None, (
        Literal('<create path="'), Line('"<>'), Literal('">\n'), Text(_forbidden("create", _PART)),
        Literal("</create>"))))
    blocks.append(Block("run", None, (Literal("<run>"), Line("<"), Literal("</run>"))))
    return Structure(tuple(blocks), BLOCK_OPENING)


def _quotable(value: str) -> bool:
    return not any(c in value for c in "<>\n\r") and not ('"' in value and "'" in value)


def _forbidden(name: str, *more: str) -> str:
    names = [n for n, short in LONG_NAMES.items() if short == name] + [name]
    return "|".join((r"</\s*" + _anycase(names) + r"\s*>", BLOCK_OPENING, *more))


def _part(name: str, inner: Piece) -> tuple[Piece, ...]:
    return Literal(f"<{name}>\n"), inner, Literal(f"</{name}>\n")


def _copyable(lines: Sequence[str], part: str) -> tuple[tuple[str, ...], ...]:
    """The runs of consecutive lines a part can hold: the file cut at the lines holding its closing tag, a
    block opening or a carriage return."""
    close = close_tag(part)
    runs: list[tuple[str, ...]] = []
    run: list[str] = []
    for line in [*lines, None]:
        if line is not None and not close.search(line) and not OPEN_TAG.search(line) and "\r" not in line:
            run.append(line)
        elif run:
            runs.append(tuple(run))
            run = []
    return tuple(runs)
