'''The grammar cb sends with a request to a server that constrains decoding (ulm serve): the answer is free
prose and edit blocks about the open files, nothing else.

    grammar = edit_grammar([OpenFile.from_bytes("geo.py", data), ...])   # Lark text, llguidance's dialect

Built from `tools.structure` (the edit format as data, so the grammar and the parser cannot drift apart):
a block names an open file by its own path and version, and its copied parts (<old>, <after>, <before>)
are consecutive lines of that file; new text is free but cannot hold its closing tag or open a block;
prose between blocks cannot open a block. New text cannot start a line with the prompt's line-number gutter
("  12|", tools.numbered's, with or without the space after it), unless an open file has a line that does:
models copy it into new lines (seen on the dev split: a rewrite whose new lines were "  1| ..." and, with
that banned, "  1|..."), and the plan cannot tell it from text.
The ban is spelled as the lines that are allowed, not as one more complement: with a third `~` in new
text's regex llguidance's lexer gave up ("too many expressions constructed") at the first "</" of a
part, so no token was allowed and the server ended the answer there. A rename's `from` is a name of the
file (`tools.renames.names`), its `to` any ASCII name.
Whether the copied lines occur once is left to the plan, which refuses with a message the model can act
on (cb.exchange sends it back).

With `edit=True` (the request asks for a change: `cb ask --edit`, every `cb bench edits` task) the answer
must open with an edit block: `start: first block* TAIL`, where `first` is a block whose opener has no prose
before it and which is not <run>. Without it a model that prefers a Markdown code fence writes one as prose
and the grammar never engages (measured: the same tokens with and without the grammar).

The shape, for one open file:

    %llguidance {}
    start: block* TAIL
    block: OPEN_0 body_0 | OPEN_1 body_1 | OPEN_2 body_2 | OPEN_3 body_3
    body_0: FORM_0                               (one alternative per block form and file)
    body_1: FORM_1 | FORM_2 | FORM_3 | FORM_4
    PROSE: /(?s:.*)/ & ~/(?s:.*)(?:<replace |<insert |<create path="|<run>|any block opening)(?s:.*)/
    TAIL: PROSE
    OPEN_0: PROSE "<replace "                    (prose ends in the terminal of the opener after it)
    FORM_0: "path=\\"geo.py\\" version=\\"1d96a4f2\\">\\n<old>\\n" RUNS_0 "</old>\\n<new>\\n" TEXT_0
            "</new>\\n</replace>"
    RUNS_0: RUN0_0 | RUN0_1 | RUN0_2 | ...              (a copy starts at any line of the file ...)
    RUN0_0: "import math\\n" RUN0_1?                   (... and goes on with the lines after it, in order)
    RUN0_1: "\\n" RUN0_2?
    RUN0_2: "def area(r):\\n" RUN0_3?
    FORM_5: "path=\\"geo.py\\" version=\\"1d96a4f2\\" from=\\"" NAMES_0 "\\" to=\\"" NAME_0 "\\"/>"
    NAMES_0: "math" | "area" | "r"                     (a rename: from a name of the file's, to any name)
    NAME_0: /[A-Za-z_][A-Za-z0-9_]*/
    TEXT_0: /(?:[^\\r\\n]*\\n)*/ & ~/(?s:.*)(?:</new> in any spelling|any block opening)(?s:.*)/

Why whole blocks are terminals: llguidance's lexer is greedy and never backtracks between lexemes, so a
copied run followed by its own terminal "</old>" would fail on a file line that starts with "</o". Inside
one terminal the regex decides where free or copied text ends. For the same reason prose is lexed with the
opener that follows it. A copy is a chain of one terminal per line, each optionally followed by the next
line's: a model cannot skip or invent a line inside a copy (the commonest failure without it: a copy that
drifts from the file after a few lines). The chains are shared by the parts whose runs are equal (all of a
file's parts, unless a line holds a part's closing tag), so the file's lines appear once in the grammar and
its size grows with the file's size, not with the number of forms: docs/edits.md has the measured sizes
and compile times.

The structure's patterns are the parser's (Python `re`, case-insensitive, Unicode classes) spelled for Rust's
`regex`, and the two differ on a few characters: Python's `\\s` also takes \\x1c-\\x1f, its case folding makes
"ı", "İ", "K" (Kelvin) and "ſ" stand for i, k and s, and its `\\w` differs from Rust's on some non-ASCII
characters. So free text here also avoids "<" or "</" and ASCII letters followed by a non-ASCII character
(which covers a tag spelled with one of those four letters, and a tag name followed by a letter Rust counts
as a word character and Python does not), and `\\s` gets \\x1c-\\x1f: nothing the grammar lets through can
open or close a block for the parser when it did not for the grammar. (The simpler spelling, the four
letters and the tag names each, makes llguidance's lexer give up: too many states.)

String literals are JSON strings (llguidance's syntax); ":" is written \\u003a where "::=" would appear, so
that no file line makes the text look like GBNF to a server that tells the two apart by "::=".
'''

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from tools.structure import (
    Block,
    Choice,
    Copied,
    Line,
    Literal,
    Name,
    OpenFile,
    Piece,
    Structure,
    Text,
    format_structure,
)

PREAMBLE = "%llguidance {}"
_ANY = "/(?s:.*)/"
_SPACE = r"[\s\x1c-\x1f]"  # Python's \s
_META = set("\\.+*?()|[]{}^$#&-~")
_LINES_TEXT = r"/(?:[^\r\n]*\n)*/"  # zero or more whole lines (no carriage returns: the parser drops them)
# Whole lines none of which starts like tools.numbered's gutter ("  12|", with or without the space after it:
# models write both), spelled without a complement: spaces, then a non-digit; or digits not followed by "|".
GUTTER = re.compile(r" *\d+\|")
_UNGUTTERED_TEXT = r"/(?:(?: *(?:[^ 0-9\r\n][^\r\n]*)?| *[0-9]+(?:[^0-9|\r\n][^\r\n]*)?)\n)*/"


def edit_grammar(files: Iterable[OpenFile], *, edit: bool = False) -> str:
    """The Lark grammar of an answer about `files`; with `edit`, one that opens with an edit block (see the
    module docstring)."""
    files = list(files)
    guttered = any(GUTTER.match(line) for f in files for line in f.lines)
    return _Builder(format_structure(files), gutter_allowed=guttered).text(edit)


def literal(text: str) -> str:
    """`text` as a Lark string literal: a JSON string, with DEL escaped and no "::=" spelled out."""
    quoted = json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
    return quoted.replace("::=", ":\\u003a=")


def regex(pattern: str) -> str:
    """`pattern` (Rust regex syntax, no flags) as a Lark /regex/ literal."""
    return "/" + pattern.replace("/", "\\/") + "/"


def _escape(text: str) -> str:
    """`text` as a Rust regex matching it literally."""
    return "".join("\\" + c if c in _META else c for c in text)


def _containing(pattern: str) -> str:
    """A regex matching any text in which `pattern` (one of tools.structure's), or a spelling of it that
    Python's `re` reads the same (see the module docstring), matches somewhere."""
    python = pattern.replace(r"\s", _SPACE)
    extra = f"</?{_SPACE}*[A-Za-z_]*[^\\x00-\\x7f]"  # a tag Python may read, with a non-ASCII letter in or after it
    return regex(f"(?s:.*)(?:{python}|{extra})(?s:.*)")


def _line_class(forbidden: str) -> str:
    """`forbidden`'s characters escaped for use inside a regex character class."""
    return "".join("\\" + c if c in "\\]^-[" else c for c in forbidden)


class _Builder:
    """Names the terminals as it meets the pieces; shared ones (a file's lines, a text kind) are made once."""

    def __init__(self, structure: Structure, *, gutter_allowed: bool) -> None:
        self.structure = structure
        self.lines_text = _LINES_TEXT if gutter_allowed else _UNGUTTERED_TEXT
        self.terminals: dict[str, str] = {}  # name -> definition, in order of first use
        self._texts: dict[str, str] = {}  # forbidden regex -> terminal name
        self._lines: dict[str, str] = {}  # forbidden characters -> terminal name
        self._runs: dict[tuple[tuple[str, ...], ...], str] = {}  # a part's runs -> its RUNS_n terminal

    def text(self, edit: bool) -> str:
        blocks = self.structure.blocks
        openers: dict[str, list[Block]] = {}
        for block in blocks:
            first = block.pieces[0]
            assert isinstance(first, Literal), block
            openers.setdefault(first.text, []).append(block)
        forbidden = "|".join([*(_escape(o) for o in openers), self.structure.block_opening])
        rules = ["start: first block* TAIL" if edit else "start: block* TAIL",
                 "block: " + " | ".join(f"OPEN_{i} body_{i}" for i in range(len(openers)))]
        prose = [f"PROSE: {_ANY} & ~{_containing(forbidden)}", "TAIL: PROSE"]
        edits = [i for i, group in enumerate(openers.values()) if all(b.form != "run" for b in group)]
        if edit:
            rules.append("first: " + " | ".join(f"FIRST_{i} body_{i}" for i in edits))
        for i, (opener, group) in enumerate(openers.items()):
            prose.append(f"OPEN_{i}: PROSE {literal(opener)}")
            if edit and i in edits:
                prose.append(f"FIRST_{i}: {literal(opener)}")
            forms = [self._form(block.path, block.pieces[1:]) for block in group]
            rules.append(f"body_{i}: " + " | ".join(forms))
        definitions = [f"{name}: {body}" for name, body in self.terminals.items()]
        return "\n".join([PREAMBLE, *rules, *prose, *definitions]) + "\n"

    def _form(self, path: str | None, pieces: Sequence[Piece]) -> str:
        """One block form after its opener, as a terminal; returns its name."""
        out: list[str] = []
        pending = ""
        for piece in pieces:
            if isinstance(piece, Literal):
                pending += piece.text
                continue
            if pending:
                out.append(literal(pending))
                pending = ""
            out.append(self._piece(piece))
        if pending:
            out.append(literal(pending))
        return self._terminal("FORM", " ".join(out))

    def _piece(self, piece: Piece) -> str:
        if isinstance(piece, Copied):
            return self._copied(piece.runs)
        if isinstance(piece, Text):
            if piece.forbidden not in self._texts:
                self._texts[piece.forbidden] = self._terminal(
                    "TEXT", f"{self.lines_text} & ~{_containing(piece.forbidden)}")
            return self._texts[piece.forbidden]
        if isinstance(piece, Choice):
            return self._shared("NAMES", " | ".join(literal(o) for o in piece.options))
        if isinstance(piece, Name):
            return self._shared("NAME", regex(piece.pattern))
        assert isinstance(piece, Line), piece
        if piece.forbidden not in self._lines:
            allowed = _line_class(piece.forbidden)
            self._lines[piece.forbidden] = self._terminal(
                "LINE", regex(f"[^{allowed}\\r\\n]*[^{allowed}\\s\\x1c-\\x1f][^{allowed}\\r\\n]*"))
        return self._lines[piece.forbidden]

    def _copied(self, runs: tuple[tuple[str, ...], ...]) -> str:
        """Consecutive lines of one of `runs`, each with its newline: a chain terminal per line (RUNk_i: the
        line, then optionally the chain of the next), and RUNS_n, a copy starting at any of them."""
        if runs not in self._runs:
            k = len(self._runs)
            starts: list[str] = []
            for lines in runs:
                first = len(starts)
                for i, line in enumerate(lines):
                    name = f"RUN{k}_{first + i}"
                    then = f" RUN{k}_{first + i + 1}?" if i + 1 < len(lines) else ""
                    self.terminals[name] = literal(line + "\n") + then
                    starts.append(name)
            self._runs[runs] = self._terminal("RUNS", " | ".join(starts))
        return self._runs[runs]

    def _shared(self, kind: str, body: str) -> str:
        """The terminal of `kind` defined as `body`, made once however many blocks use it."""
        for name, existing in self.terminals.items():
            if existing == body and name.startswith(kind + "_"):
                return name
        return self._terminal(kind, body)

    def _terminal(self, kind: str, body: str) -> str:
        name = f"{kind}_{sum(n.startswith(kind + '_') for n in self.terminals)}"
        self.terminals[name] = body
        return name

