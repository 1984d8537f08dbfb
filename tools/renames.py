"""Renaming a name in a file: which words are uses of it, and the file's lines with every use renamed.

A `<rename path version from="total" to="subtotal"/>` block (tools.ops.rename_symbol) says what a small
model finds hard to spell as one copied-lines block per use: the definition, every call, the import line.
cb finds the uses and the plan turns them into line edits:

- in a Python file (`.py`, `.pyi`, `.pyw`, or a file whose first line is a python shebang) a use is a NAME
  token (`tokenize`): code only, so comments and strings keep their words, except the expression fields of
  f-strings (`f"{total:.2f}"`), which are code. Attribute names (`obj.total`) and keyword arguments count:
  the rename is by name, as a search for the word would see it, not by scope;
- in any other file, or a Python file that does not tokenize, a use is the word as a whole word (not part
  of a longer run of letters, digits and underscores).

`names(lines, path)` lists the names a rename may start from (the grammar offers them); `check(lines,
path, old, new)` raises `RenameError` with a message the model can act on when the name does not occur
(naming the closest names the file has) or the new name is already one of the file's (two names would
become one); `renamed(lines, path, old, new)` returns the lines with every use renamed.
"""

from __future__ import annotations

import bisect
import difflib
import io
import itertools
import keyword
import re
import tokenize
from collections.abc import Sequence

_WORD = re.compile(r"(?<!\w)[^\W\d]\w*")  # a whole word that can be a name
_PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")
_FSTRING = re.compile(r"^[rRbBuU]*[fF][rRbBuU]*['\"]")


class RenameError(ValueError):
    """A rename that cannot be made; the message is one line, for the model and the user."""


def is_python(path: str, lines: Sequence[str]) -> bool:
    first = lines[0] if lines else ""
    return path.lower().endswith(_PYTHON_SUFFIXES) or (first.startswith("#!") and "python" in first)


def names(lines: Sequence[str], path: str) -> list[str]:
    """The distinct names of the file in order of first use (for Python, its code's names less keywords)."""
    found = [lines[row][start:end] for row, start, end in _spans(lines, path)[0]]
    return [n for n in dict.fromkeys(found) if not keyword.iskeyword(n)]


def check(lines: Sequence[str], path: str, old: str, new: str) -> None:
    """Raise RenameError unless `old` is a name the file uses and `new` a name it does not."""
    if not _WORD.fullmatch(old):
        raise RenameError(f"from={old!r} is not a name (letters, digits and _, not starting with a digit)")
    if not _WORD.fullmatch(new) or keyword.iskeyword(new):
        raise RenameError(f"to={new!r} is not a name (letters, digits and _, not starting with a digit)")
    if old == new:
        raise RenameError(f"renames {old} to itself")
    spans, code = _spans(lines, path)
    words = {lines[row][start:end] for row, start, end in spans}
    if old not in words:
        close = difflib.get_close_matches(old, sorted(words), n=3, cutoff=0.6)
        hint = f"; its names like it: {', '.join(close)}" if close else ""
        raise RenameError(f"{old} does not occur {'in its code' if code else 'as a whole word'}{hint}")
    if new in words:
        raise RenameError(f"{new} is already a name in it; renaming {old} to {new} would make them one name")


def renamed(lines: Sequence[str], path: str, old: str, new: str) -> list[str]:
    """`lines` with every use of the name `old` renamed to `new` (see the module docstring); `check` first."""
    out = list(lines)
    for row, start, end in reversed(_spans(lines, path)[0]):  # right to left: earlier spans keep their columns
        if lines[row][start:end] == old:
            out[row] = out[row][:start] + new + out[row][end:]
    return out


def _spans(lines: Sequence[str], path: str) -> tuple[list[tuple[int, int, int]], bool]:
    """(row, start, end) of every name in the file, and whether they are a Python file's code names."""
    if is_python(path, lines) and (spans := _python_spans(lines)) is not None:
        return spans, True
    return [(row, m.start(), m.end()) for row, line in enumerate(lines) for m in _WORD.finditer(line)], False


def _python_spans(lines: Sequence[str]) -> list[tuple[int, int, int]] | None:
    """(row, start, end) of every name in the code, f-string fields included; None when it does not tokenize."""
    text = "".join(line + "\n" for line in lines)
    starts = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))  # offset of each row
    spans: list[tuple[int, int, int]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NAME:
                spans.append((tok.start[0] - 1, tok.start[1], tok.end[1]))
            elif tok.type == tokenize.STRING and _FSTRING.match(tok.string):
                base = starts[tok.start[0] - 1] + tok.start[1]
                for offset, length in _field_names(tok.string):
                    row = bisect.bisect_right(starts, base + offset) - 1
                    col = base + offset - starts[row]
                    spans.append((row, col, col + length))
    except (tokenize.TokenError, SyntaxError):
        return None
    return spans


def _field_names(literal: str) -> list[tuple[int, int]]:
    """(offset, length) of the names inside an f-string literal's replacement fields ({...}; {{ is text)."""
    found: list[tuple[int, int]] = []
    depth = 0
    field_start = 0
    i = 0
    while i < len(literal):
        pair = literal[i:i + 2]
        if depth == 0 and pair in ("{{", "}}"):
            i += 2
            continue
        if literal[i] == "{":
            depth += 1
            if depth == 1:
                field_start = i + 1
        elif literal[i] == "}" and depth:
            depth -= 1
            if depth == 0:
                found.extend((m.start(), len(m.group())) for m in _WORD.finditer(literal, field_start, i))
        i += 1
    return found
