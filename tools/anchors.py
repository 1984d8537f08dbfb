"""Finding copied lines in a file: how an edit of format v2 gets its line range.

A model names the lines it changes by copying them (`SearchReplaceEdit.old`, `AnchoredInsertEdit.anchor`).
`find_run` looks for them as consecutive lines of the file's decoded lines (`TextFile.text_lines()`: line
endings and the BOM are already apart, so a CRLF file matches a copy written with LF), and `resolve` turns
the edit into the numbered edit of that range, which the plan then checks and splices like any other. It
runs against the version the model saw (the plan has checked the version first), so the range is the one
the model meant.

The copy is tried as written and, when every copied line starts with the prompt's line-number prefix
("12| ", tools.numbered), with those prefixes removed. Each is tried with three ways of comparing; the
first that finds the lines at all decides, and it must find them exactly once:

1. exact;
2. trailing whitespace ignored;
3. one consistent indentation shift: every copied line is its file line with the same leading whitespace
   removed (or added), blank lines match blank lines;
4. part of a line: the copy, as text, occurs in the file's text exactly once but not as whole lines (a
   model that copied `3.14 * r * r` out of `    return 3.14 * r * r`); the range is the lines it
   touches, and the new text takes the rest of the first and last of them.

A tolerance applied to the copy is applied to the new text too (the prefixes come off, the indentation
shifts back, the rest of a partly copied line is kept), so the new lines sit where the model meant them.
Found more than once: refused as ambiguous, saying where. Not found: refused, naming the first copied
line the file lacks and the file's closest lines (difflib), or where the copied run stops matching. The
messages are short and concrete: they go back to the model in a retry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools.proposals import (
    AnchoredEdit,
    InsertAfterEdit,
    LineEdit,
    LineReplaceEdit,
    SearchReplaceEdit,
    content_lines,
)

NUMBER_PREFIX = re.compile(r"^ *\d+\|(?: |$)")  # tools.numbered writes "  12| text" and "  12|" for an empty line
MAX_PLACES = 5  # occurrences named in an "occurs N times" message
QUOTE_LIMIT = 60  # characters of a line quoted in a message

Adapt = Callable[[list[str]], list[str]]


class AnchorError(ValueError):
    """The copied lines are not in the file exactly once; the message says what to copy instead."""


@dataclass(frozen=True)
class Run:
    """Where copied lines are: lines [start, end) (0-based), and how the new text must follow the copy's tolerance."""

    start: int
    end: int
    adapt: Adapt
    how: str  # "" when found exactly; else the tolerance used, for a note to the user


def resolve(edit: AnchoredEdit, lines: Sequence[str]) -> tuple[LineEdit, str]:
    """The numbered edit `edit` stands for in a file of `lines`, and the tolerance used ("" if exact)."""
    if isinstance(edit, SearchReplaceEdit):
        run = find_run(lines, content_lines(edit.old), "<old>")
        new = _joined(run.adapt(content_lines(edit.content)))
        return LineReplaceEdit(edit.path, edit.version, run.start + 1, run.end, new), run.how
    if edit.where == "top":
        return InsertAfterEdit(edit.path, edit.version, 0, edit.content), ""
    if edit.where == "end":
        return InsertAfterEdit(edit.path, edit.version, len(lines), edit.content), ""
    if not lines:
        raise AnchorError(f'the file is empty, so it has no <{edit.where}> line; insert with at="top"')
    run = find_run(lines, content_lines(edit.anchor), f"<{edit.where}>")
    after = run.end if edit.where == "after" else run.start
    return InsertAfterEdit(edit.path, edit.version, after, _joined(run.adapt(content_lines(edit.content)))), run.how


def find_run(lines: Sequence[str], copied: Sequence[str], part: str) -> Run:
    """Where `copied` occurs as consecutive `lines` (see the module docstring); raises AnchorError."""
    if not copied:
        raise AnchorError(f"the {part} part is empty; copy the lines from the file")
    copies: list[tuple[list[str], Adapt, str]] = [(list(copied), _same, "")]
    if all(NUMBER_PREFIX.match(c) or not c.strip() for c in copied) and any(c.strip() for c in copied):
        copies.append(([NUMBER_PREFIX.sub("", c) for c in copied], _drop_numbers, "line numbers removed"))
    for copy, adapt_numbers, numbers_note in copies:
        for compare in (_exact, _trailing, _indent, _fragment):
            starts, adapt_indent, note = compare(lines, copy)
            how = ", ".join(n for n in (numbers_note, note) if n)
            if len(starts) == 1:
                return Run(starts[0], starts[0] + len(copy), _then(adapt_numbers, adapt_indent), how)
            if starts:
                raise AnchorError(_ambiguous(part, copy, starts, how))
    raise AnchorError(_missing(part, lines, copies[-1][0]))


# --- ways of comparing: each returns the start of every match, how to adapt the new text, and a note --------


def _same(new: list[str]) -> list[str]:
    return new


def _drop_numbers(new: list[str]) -> list[str]:
    return [NUMBER_PREFIX.sub("", line) for line in new]


def _then(first: Adapt, second: Adapt) -> Adapt:
    return lambda new: second(first(new))


def _starts(file: Sequence[str], copy: Sequence[str]) -> list[int]:
    k = len(copy)
    first = copy[0]
    return [i for i in range(len(file) - k + 1) if file[i] == first and list(file[i:i + k]) == list(copy)]


def _exact(lines: Sequence[str], copy: list[str]) -> tuple[list[int], Adapt, str]:
    return _starts(lines, copy), _same, ""


def _trailing(lines: Sequence[str], copy: list[str]) -> tuple[list[int], Adapt, str]:
    return _starts([x.rstrip() for x in lines], [c.rstrip() for c in copy]), _same, "trailing whitespace ignored"


def _indent(lines: Sequence[str], copy: list[str]) -> tuple[list[int], Adapt, str]:
    stripped = [x.strip() for x in lines]
    found: list[tuple[int, str, str]] = []
    for start in _starts(stripped, [c.strip() for c in copy]):
        shift = _shift(lines[start:start + len(copy)], copy)
        if shift is not None:
            found.append((start, *shift))
    if len(found) != 1:
        return [s for s, _, _ in found], _same, "indentation ignored"
    _, direction, prefix = found[0]
    if direction == "add":
        return [found[0][0]], lambda new: [prefix + n if n.strip() else n for n in new], \
            f"indentation shifted by {prefix!r}"
    return [found[0][0]], lambda new: [n.removeprefix(prefix) for n in new], f"indentation shifted by -{prefix!r}"


def _fragment(lines: Sequence[str], copy: list[str]) -> tuple[list[int], Adapt, str]:
    needle = "\n".join(copy)
    if not needle.strip():
        return [], _same, ""
    text = "\n".join(lines)
    found: list[int] = []
    at = text.find(needle)
    while at >= 0:
        found.append(at)
        at = text.find(needle, at + 1)
    if len(found) != 1:
        return [text.count("\n", 0, f) for f in found], _same, "part of a line"
    first = text.count("\n", 0, found[0])
    prefix = text[text.rfind("\n", 0, found[0]) + 1:found[0]]
    end = found[0] + len(needle)
    line_end = text.find("\n", end)
    suffix = text[end:line_end if line_end >= 0 else len(text)]
    shown = f"line {first + 1}" if len(copy) == 1 else f"lines {first + 1}-{first + len(copy)}"
    return [first], lambda new: _embed(prefix, new, suffix), f"copied as part of {shown}"


def _embed(prefix: str, new: list[str], suffix: str) -> list[str]:
    """New lines in place of a partly copied run: the first gets the line's start, the last its end."""
    if not new:
        rest = prefix + suffix
        return [rest] if rest.strip() else []
    out = list(new)
    out[0] = prefix + out[0]
    out[-1] += suffix
    return out


def _shift(file: Sequence[str], copy: Sequence[str]) -> tuple[str, str] | None:
    """("add", X) when every non-blank file line is X + its copy, ("remove", X) when every copy is X + the file line."""
    shifts = set()
    for f, c in zip(file, copy, strict=True):
        if not c.strip():
            continue
        fi, ci = f[:len(f) - len(f.lstrip())], c[:len(c) - len(c.lstrip())]
        if len(fi) > len(ci) and fi.endswith(ci):
            shifts.add(("add", fi[:len(fi) - len(ci)]))
        elif len(ci) > len(fi) and ci.endswith(fi):
            shifts.add(("remove", ci[:len(ci) - len(fi)]))
        else:
            return None
    return shifts.pop() if len(shifts) == 1 else None


# --- messages ------------------------------------------------------------------------------------------


def _quote(line: str) -> str:
    text = line.rstrip()
    return repr(text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "…")


def _lines(part: str, copy: Sequence[str]) -> str:
    return f"the {part} line {_quote(copy[0])}" if len(copy) == 1 else f"the {len(copy)} {part} lines"


def span_text(first: int, last: int) -> str:
    """1-based lines first..last as "line 4" or "lines 4-6"."""
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _ambiguous(part: str, copy: Sequence[str], starts: Sequence[int], how: str) -> str:
    k = len(copy)
    places = [str(s + 1) if k == 1 else f"{s + 1}-{s + k}" for s in starts[:MAX_PLACES]]
    more = ", …" if len(starts) > MAX_PLACES else ""
    tolerance = f" ({how})" if how else ""
    if k == 1:
        return (f"{_lines(part, copy)} occurs {len(starts)} times{tolerance} (lines {', '.join(places)}{more}); "
                "copy the line before or after it too, so that the copied lines occur once")
    return (f"{_lines(part, copy)} occur {len(starts)} times{tolerance} (lines {', '.join(places)}{more}); "
            "copy one more line before or after them, so that they occur once")


def _missing(part: str, lines: Sequence[str], copy: Sequence[str]) -> str:
    stripped = [x.strip() for x in lines]
    present = set(stripped)
    absent = next((c for c in copy if c.strip() not in present), None)
    if absent is not None:
        return (f"the {part} line {_quote(absent)} is not in the file; {_closest(absent, lines)}. "
                "Copy lines exactly as the file shows them")
    best_start, best_len = 0, 0
    want = [c.strip() for c in copy]
    for start in (i for i, s in enumerate(stripped) if s == want[0]):
        n = 0
        while n < len(want) and start + n < len(stripped) and stripped[start + n] == want[n]:
            n += 1
        if n > best_len:
            best_start, best_len = start, n
    found = span_text(best_start + 1, best_start + best_len)
    if best_len == len(copy):
        return (f"{_lines(part, copy)} match {found} only with other indentation; "
                "copy them with the file's indentation")
    after = best_start + best_len
    there = f"line {after + 1} is {_quote(lines[after])}" if after < len(lines) else "the file ends there"
    return (f"{_lines(part, copy)} match {found}, but the next copied line is "
            f"{_quote(copy[best_len])} where {there}; copy consecutive lines exactly")


def _closest(line: str, lines: Sequence[str]) -> str:
    first_seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        first_seen.setdefault(text.strip(), number)
    close = difflib.get_close_matches(line.strip(), [t for t in first_seen if t], n=3, cutoff=0.6)
    if not close:
        return "no line of the file is close to it"
    return "closest: " + ", ".join(f"line {first_seen[t]} {_quote(lines[first_seen[t] - 1])}" for t in close)


def _joined(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)
