"""Hypothesis properties of the edit engine (E16 / F1) over arbitrary bytes with mixed line endings.

- undo(apply(f)) == f, byte for byte (BOM, CRLF/LF/lone CR, latin-1 bytes, no final newline included);
- bytes outside the edited lines never change;
- new lines take the file's dominant ending;
- applying the same batch twice is refused the second time (stale), and changes nothing;
- format v2: a replace or insert found by its copied lines equals the numbered edit of the same range
  (exact copies, copies with the prompt's line numbers, copies with a shifted indent), and a copy that
  occurs more than once is refused.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tools import (
    AnchoredInsertEdit,
    InsertAfterEdit,
    Journal,
    LineReplaceEdit,
    SearchReplaceEdit,
    SingleLineEdit,
    accept_all,
    apply_batch,
    file_version,
    plan_batch,
)
from tools.textfile import NotEditable, TextFile

line_bytes = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"").replace(b"\x00", b"") or b"")
ending = st.sampled_from([b"\n", b"\r\n"])


@st.composite
def files(draw: st.DrawFn) -> bytes:
    """Bytes shaped like text: lines of arbitrary bytes (no NUL) with mixed endings, maybe a BOM or no final EOL."""
    lines = draw(st.lists(st.tuples(line_bytes, ending), max_size=12))
    data = b"".join(text + end for text, end in lines)
    if lines and draw(st.booleans()):
        data = data[: -len(lines[-1][1])]  # no final newline
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data


new_text = st.lists(st.text(st.characters(codec="latin-1", blacklist_characters="\n\r\x00"), max_size=8), max_size=3)


@st.composite
def edits(draw: st.DrawFn, n: int, version: str) -> list:
    """1-3 non-overlapping edits of a file of `n` lines."""
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=2, max_size=6)))
    out = []
    for a, b in zip(cuts[::2], cuts[1::2], strict=False):
        content = "".join(line + "\n" for line in draw(new_text))
        if a == b:
            if out and out[-1].span()[1] == a and out[-1].span()[0] == a:
                continue
            out.append(InsertAfterEdit("f", version, a, content))
        elif b - a == 1 and draw(st.booleans()):
            out.append(SingleLineEdit("f", version, b, content))
        else:
            out.append(LineReplaceEdit("f", version, a + 1, b, content))
    return out


def workspace() -> tuple[tempfile.TemporaryDirectory, Path, Journal]:
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name) / "ws"
    root.mkdir()
    return tmp, root, Journal(Path(tmp.name) / "journal")


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_undo_of_apply_is_the_identity_and_a_second_apply_is_stale(data: st.DataObject) -> None:
    old = data.draw(files())
    tmp, root, journal = workspace()
    with tmp:
        f = root / "f"
        f.write_bytes(old)
        batch = data.draw(edits(len(TextFile.parse(old)), file_version(old)))
        result = apply_batch(batch, root, journal=journal, confirm=accept_all)
        if result.status == "refused":  # only for text the file's encoding cannot hold; then nothing changed
            assert "cannot hold" in result.message() and f.read_bytes() == old
            return
        assert result.status in ("applied", "nothing"), result.message()
        if result.status == "applied":
            new = f.read_bytes()
            again = apply_batch(batch, root, journal=journal, confirm=accept_all)
            assert again.status == "refused" and f.read_bytes() == new
            assert journal.undo_last().ok
        assert f.read_bytes() == old


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_bytes_outside_the_edited_lines_never_change_and_new_lines_take_the_dominant_ending(
        data: st.DataObject) -> None:
    old = data.draw(files())
    text = TextFile.parse(old)
    n = len(text)
    a = data.draw(st.integers(0, n))
    b = data.draw(st.integers(a, n))
    lines = data.draw(new_text)
    try:
        new = text.splice(a, b, lines).to_bytes()
    except NotEditable:
        assert text.encoding == "cp1252"  # latin-1 and UTF-8 hold every latin-1 character
        return
    prefix = text.bom + b"".join(line + end for line, end in zip(text.lines[:a], text.ends[:a], strict=True))
    suffix = b"".join(line + end for line, end in zip(text.lines[b:], text.ends[b:], strict=True))
    if b == n and n and text.ends[-1] == b"" and a:
        # At the end of a file without a final newline, the line before the edit gives up (or gains) its EOL.
        prefix = prefix[: len(prefix) - len(text.ends[a - 1])]
    assert new.startswith(prefix) and new.endswith(suffix)
    middle = TextFile.parse(new[len(prefix): len(new) - len(suffix)] if suffix else new[len(prefix):])
    dominant = text.newline()
    if not (b == n and n and text.ends[-1] == b""):
        assert [line.decode(text.encoding) for line in middle.lines] == lines
    allowed = {dominant, b""} | ({text.ends[b - 1]} if b > a else set())
    if b == n and n and text.ends[-1] == b"" and a:
        allowed.add(text.ends[a - 1])  # the middle then starts with that line's own ending
    assert set(middle.ends) <= allowed


# --- format v2: an edit that copies its lines equals the numbered edit of the same range ------------------


def apply_bytes(old: bytes, batch: list) -> tuple[str, bytes | tuple[str, ...]]:
    """Plan `batch` against a file holding `old`: ("ok", new bytes) or ("refused", errors)."""
    tmp, root, _ = workspace()
    with tmp:
        (root / "f").write_bytes(old)
        plan = plan_batch(batch, root)
        if plan.errors:
            return "refused", plan.errors
        return "ok", plan.changes[0].new if plan.changes else old


def occurrences(lines: list[str], run: list[str]) -> int:
    return sum(lines[i:i + len(run)] == run for i in range(len(lines) - len(run) + 1))


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_a_replace_found_by_its_copied_lines_equals_the_numbered_replace_of_that_range(data: st.DataObject) -> None:
    old = data.draw(files())
    text = TextFile.parse(old)
    lines = text.text_lines()
    assume(lines)
    a = data.draw(st.integers(0, len(lines) - 1))
    b = data.draw(st.integers(a + 1, len(lines)))
    new = "".join(line + "\n" for line in data.draw(new_text))
    copied = "".join(line + "\n" for line in lines[a:b])
    version = file_version(old)
    anchored = apply_bytes(old, [SearchReplaceEdit("f", version, copied, new)])
    numbered = apply_bytes(old, [LineReplaceEdit("f", version, a + 1, b, new)])
    if numbered[0] == "refused":  # only text the file's encoding cannot hold
        assert anchored[0] == "refused" and "cannot hold" in numbered[1][0]
        return
    if occurrences(lines, lines[a:b]) == 1:
        assert anchored == numbered
    else:
        assert anchored[0] == "refused" and "times" in anchored[1][0]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_an_insert_after_or_before_copied_lines_equals_the_numbered_insert(data: st.DataObject) -> None:
    old = data.draw(files())
    lines = TextFile.parse(old).text_lines()
    assume(lines)
    a = data.draw(st.integers(0, len(lines) - 1))
    b = data.draw(st.integers(a + 1, min(a + 3, len(lines))))
    where = data.draw(st.sampled_from(["after", "before"]))
    new = "".join(line + "\n" for line in data.draw(new_text))
    copied = "".join(line + "\n" for line in lines[a:b])
    version = file_version(old)
    anchored = apply_bytes(old, [AnchoredInsertEdit("f", version, where, copied, new)])
    numbered = apply_bytes(old, [InsertAfterEdit("f", version, b if where == "after" else a, new)])
    if numbered[0] == "refused":
        assert anchored[0] == "refused"
    elif occurrences(lines, lines[a:b]) == 1:
        assert anchored == numbered
    else:
        assert anchored[0] == "refused" and "times" in anchored[1][0]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_copies_with_the_prompts_line_numbers_or_a_shifted_indent_find_the_same_range(data: st.DataObject) -> None:
    lines = data.draw(st.lists(st.text(st.characters(codec="ascii", blacklist_characters="\n\r\x00"), max_size=10),
                               min_size=1, max_size=10))
    old = "".join(line + "\n" for line in lines).encode()
    a = data.draw(st.integers(0, len(lines) - 1))
    b = data.draw(st.integers(a + 1, len(lines)))
    assume(any(line.strip() for line in lines[a:b]))
    version = file_version(old)
    numbered = apply_bytes(old, [LineReplaceEdit("f", version, a + 1, b, "X\n")])
    width = len(str(len(lines)))
    with_numbers = "".join(f"{n:>{width}}| {line}\n" if line else f"{n:>{width}}|\n"
                           for n, line in enumerate(lines[a:b], start=a + 1))
    trimmed = [line.rstrip() for line in lines]
    if not occurrences(trimmed, [c.rstrip() for c in with_numbers.splitlines()]):  # else the file holds them
        result = apply_bytes(old, [SearchReplaceEdit("f", version, with_numbers, "X\n")])
        assert result == numbered or (result[0] == "refused" and "times" in result[1][0])
    indented = [("    " + line if line.strip() else line) for line in lines[a:b]]
    if not occurrences(trimmed, [c.rstrip() for c in indented]):
        result = apply_bytes(old, [SearchReplaceEdit("f", version, "".join(c + "\n" for c in indented), "    X\n")])
        assert result == numbered or (result[0] == "refused" and "times" in result[1][0])
