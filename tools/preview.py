"""What the user sees before saying yes: a unified diff per file, a summary, and warnings. Text only.

Proposed text is untrusted: an escape sequence in it could move the cursor and hide a line of the diff
from the person approving it. `visible()` makes every control character, C1 code, bidi override and
invisible separator visible (ESC → ␛, CR → ␍, U+202E → ⟨U+202E⟩: the table of `tools.controls`) so the diff
is inert text; cb may then colour it (rich) but must not print the proposal any other way. Tabs are kept.

Warnings (each asks for an extra confirmation whose default is No, in cb):
- the batch removes more than half of a file of `MIN_LINES_FOR_SHRINK_WARNING`+ lines (net of new lines);
- the new text holds a placeholder such as "rest of code" / "... existing code ..." instead of real lines.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from tools.controls import CONTROLS, INVISIBLE, translation
from tools.proposals import CreateFile, EditProposal

MIN_LINES_FOR_SHRINK_WARNING = 10

PLACEHOLDER = re.compile(
    r"(rest of (the )?(code|file|function|class|implementation|method)"
    r"|(existing|remaining|previous|other|unchanged) (code|content|lines|implementation|methods)"
    r"|(code|content|lines) (remains? |stays? |is )?unchanged"
    r"|same as (before|above)"
    r"|(#|//|/\*|<!--|^\s*--)\s*(\.\.\.|…))",
    re.IGNORECASE | re.MULTILINE,
)


_STAND_INS = translation(CONTROLS, INVISIBLE, keep="\t")


def visible(text: str) -> str:
    """`text` with every control, C1, bidi and invisible character replaced by a visible stand-in."""
    return text.translate(_STAND_INS)


def unified_diff(path: str, old: Sequence[str] | None, new: Sequence[str], context: int = 3) -> str:
    """A unified diff of decoded lines, every line made `visible`; `old` None means a new file.

    Only the window between the common prefix and suffix is compared, so a one-line edit of a
    million-line file costs a pass over the lines, not a full diff.
    """
    before_all = list(old or [])
    head = 0
    limit = min(len(before_all), len(new))
    while head < limit and before_all[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and before_all[-1 - tail] == new[-1 - tail]:
        tail += 1
    lo = max(0, head - context)
    keep = max(0, tail - context)
    before = [visible(line) + "\n" for line in before_all[lo:len(before_all) - keep]]
    after = [visible(line) + "\n" for line in new[lo:len(new) - keep]]
    fromfile = "/dev/null" if old is None else f"a/{visible(path)}"
    out = []
    for line in difflib.unified_diff(before, after, fromfile=fromfile, tofile=f"b/{visible(path)}", n=context):
        m = _HUNK.match(line)
        if m and lo:
            line = f"@@ -{_shift(m.group(1), lo)} +{_shift(m.group(2), lo)} @@\n"
        out.append(line)
    return "".join(out)


_HUNK = re.compile(r"@@ -(\S+) \+(\S+) @@")


def _shift(rng: str, offset: int) -> str:
    start, _, count = rng.partition(",")
    first = int(start) + offset if int(start) or count != "0" else offset
    return f"{first},{count}" if count else str(first)


def _n(count: int, word: str = "line") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summarize(spans: Sequence[tuple[int, int, int]]) -> str:
    """A one-line summary of splices given as (old start, old end, new line count): "replaces 3 lines, inserts 2"."""
    replaced = [(b - a, k) for a, b, k in spans if b > a and k]
    deleted = sum(b - a for a, b, k in spans if b > a and not k)
    inserted = sum(k for a, b, k in spans if b == a)
    parts = []
    if replaced:
        old = sum(r for r, _ in replaced)
        new = sum(k for _, k in replaced)
        parts.append(f"replaces {_n(old)}" + ("" if new == old else f" with {new}"))
    if inserted:
        parts.append(f"inserts {_n(inserted)}")
    if deleted:
        parts.append(f"deletes {_n(deleted)}")
    return ", ".join(parts) or "changes nothing"


def warnings_for(old_count: int | None, spans: Sequence[tuple[int, int, int]],
                 proposals: Sequence[EditProposal]) -> tuple[str, ...]:
    """The warnings a file change deserves (see the module docstring); empty when there are none."""
    found = []
    if old_count is not None and old_count >= MIN_LINES_FOR_SHRINK_WARNING:
        removed = sum(b - a for a, b, _ in spans)
        added = sum(k for _, _, k in spans)
        if removed - added > old_count / 2:
            found.append(f"removes {removed - added} of its {old_count} lines")
    for p in proposals:
        if m := PLACEHOLDER.search(p.content):
            start = p.content.rfind("\n", 0, m.start()) + 1
            end = p.content.find("\n", m.end())
            line = p.content[start:end if end >= 0 else len(p.content)]
            where = "the new file" if isinstance(p, CreateFile) else f"the edit at line {p.first_line()}"
            found.append(f"{where} holds placeholder text instead of real lines: {visible(line.strip())[:60]!r}")
    return tuple(found)
