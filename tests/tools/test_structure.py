"""The format as data for a grammar builder: its blocks per open file, and that any filling of them parses to
the proposal it spells (so a grammar generated from it can only produce answers the parser reads)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tools import (
    AnchoredInsertEdit,
    CreateFile,
    OpenFile,
    RenameEdit,
    RunProposal,
    SearchReplaceEdit,
    file_version,
    format_structure,
    parse_proposals,
)
from tools.format import OPEN_TAG, close_tag
from tools.structure import BLOCK_OPENING, Choice, Copied, Line, Literal, Name, Text


def test_each_open_file_gets_the_six_edit_forms_and_create_and_run_come_once() -> None:
    a = OpenFile.from_bytes("a.py", b"\xef\xbb\xbfx = 1\r\ny = 2\r\nx = 1")
    b = OpenFile("d/b.txt", "0123abcd", ("only",))
    s = format_structure([a, b])
    forms = ("replace", "insert after", "insert before", "insert top", "insert end", "rename")
    assert [(blk.form, blk.path) for blk in s.blocks] == [
        *((form, "a.py") for form in forms), *((form, "d/b.txt") for form in forms), ("create", None), ("run", None)]
    assert a.version == file_version(b"\xef\xbb\xbfx = 1\r\ny = 2\r\nx = 1") and a.lines == ("x = 1", "y = 2", "x = 1")
    replace = s.blocks[0].pieces
    assert replace[:4] == (Literal("<replace "), Literal(f'path="a.py" version="{a.version}"'), Literal(">\n"),
                           Literal("<old>\n"))
    assert replace[4] == Copied((("x = 1", "y = 2", "x = 1"),))  # the file's lines in order
    assert replace[4].lines == ("x = 1", "y = 2")  # distinct, in file order
    assert replace[5:7] == (Literal("</old>\n"), Literal("<new>\n"))
    assert isinstance(replace[7], Text) and replace[8:] == (Literal("</new>\n"), Literal("</replace>"))
    top = s.blocks[3].pieces
    assert top[:3] == (Literal("<insert "), Literal(f'path="a.py" version="{a.version}"'), Literal(' at="top">\n'))
    assert s.blocks[5].pieces == (Literal("<rename "), Literal(f'path="a.py" version="{a.version}"'),
                                  Literal(' from="'), Choice(("x", "y")), Literal('" to="'), Name(), Literal('"/>'))


def test_lines_a_part_cannot_hold_are_not_offered_and_an_empty_file_can_only_grow_at_top_or_end() -> None:
    f = OpenFile("t.xml", "0123abcd", ("<old>ok</old>", "a </OLD> b", "<run>", "fine", "cr\r"))
    s = format_structure([f, OpenFile("empty.txt", "e3b0c442", ())])
    copied = {blk.form: blk.pieces[4].runs for blk in s.blocks
              if blk.path == "t.xml" and blk.form in ("replace", "insert after", "insert before")}
    assert copied == {"replace": (("fine",),), "insert after": (("<old>ok</old>", "a </OLD> b"), ("fine",)),
                      "insert before": (("<old>ok</old>", "a </OLD> b"), ("fine",))}
    assert [blk.form for blk in s.blocks if blk.path == "empty.txt"] == ["insert top", "insert end"]


def test_a_file_whose_path_a_block_cannot_quote_gets_no_blocks() -> None:
    s = format_structure([OpenFile("a<b>.txt", "0123abcd", ("x",)), OpenFile("it's \"q\".txt", "0123abcd", ("x",))])
    assert [blk.form for blk in s.blocks] == ["create", "run"]
    assert format_structure([OpenFile("it's.txt", "0123abcd", ("x",))]).blocks[0].pieces[1] == Literal(
        "path=\"it's.txt\" version=\"0123abcd\"")


tag_soup = st.text(st.sampled_from(list("<>/ _=\"aAbcdeEfilnNoOprRstTuwx1")), max_size=30) | st.sampled_from(
    ["<replace>", "<REPLACE path='a'>", "<replacer>", "<run>", "<run_x>", "<edit-x>", "<insert\n>", "</ NeW >",
     "</new >x", "</create_file>", "< new>"])


@settings(max_examples=2000, deadline=None)
@given(tag_soup)
def test_the_flagless_patterns_match_exactly_where_the_parsers_patterns_do(text: str) -> None:
    assert bool(re.search(BLOCK_OPENING, text)) == bool(OPEN_TAG.search(text))
    new_text = format_structure([OpenFile("a", "0123abcd", ("x",))]).blocks[0].pieces[7]
    create_text = format_structure([]).blocks[0].pieces[3]
    assert bool(re.search(new_text.forbidden, text)) == bool(close_tag("new").search(text) or OPEN_TAG.search(text))
    part = re.search(r"<(?:old|new|after|before)\s*/?>", text, re.IGNORECASE)
    assert bool(re.search(create_text.forbidden, text)) == bool(
        close_tag("create").search(text) or OPEN_TAG.search(text) or part)
    for pattern in (BLOCK_OPENING, new_text.forbidden, create_text.forbidden):
        assert "\\b" not in pattern and "(?=" not in pattern and "(?!" not in pattern and "(?i" not in pattern


# --- any filling of the structure parses to what it spells ------------------------------------------------

# Markdown fences (a Text opening and closing with ```) are the one documented exception: no ` or ~ here.
chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r`~")
file_lines = st.lists(st.text(chars, max_size=12) | st.sampled_from(["<old>", "</new>", "<insert x>", "  ", ""]),
                      min_size=0, max_size=8)
text_line = st.text(chars, max_size=12) | st.sampled_from(["<new>", "</NEW>", "</ new >", "<run>", "<p>x</p>", " "])


@st.composite
def filling(draw: st.DrawFn, piece: object) -> str:
    if isinstance(piece, Literal):
        return piece.text
    if isinstance(piece, Copied):
        run = draw(st.sampled_from(piece.runs))  # consecutive lines of one run
        start = draw(st.integers(0, len(run) - 1))
        return "".join(line + "\n" for line in run[start:start + draw(st.integers(1, 3))])
    if isinstance(piece, Text):
        pattern = re.compile(piece.forbidden)
        lines = draw(st.lists(text_line, max_size=4))
        text = "".join(line + "\n" for line in lines)
        return text if not pattern.search(text) else ""
    if isinstance(piece, Choice):
        return draw(st.sampled_from(piece.options))
    if isinstance(piece, Name):
        return draw(st.from_regex(piece.pattern, fullmatch=True))
    assert isinstance(piece, Line)
    line = draw(st.text(chars, min_size=1, max_size=12).filter(
        lambda t: t.strip() and not any(c in t for c in piece.forbidden)))
    return line


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


@settings(max_examples=400, deadline=None)
@given(st.data(), file_lines, st.sampled_from(["a.py", "d/it's.txt", 'q"uote.md']))
def test_every_filling_of_every_block_parses_to_the_proposal_it_spells(data: st.DataObject, lines: list[str],
                                                                       path: str) -> None:
    f = OpenFile(path, "0123abcd", tuple(lines))
    s = format_structure([f])
    block = data.draw(st.sampled_from(s.blocks))
    pieces = [data.draw(filling(p)) for p in block.pieces]
    prose = data.draw(st.sampled_from(["", "Here is the edit:\n", "a < b and x > y\n"]))
    result = parse_proposals(prose + "".join(pieces) + "\nDone.")
    assert result.errors == (), (block.form, pieces)
    assert len(result.proposals) == 1
    p = result.proposals[0]
    text = "".join(pieces)
    kinds = {"replace": SearchReplaceEdit, "create": CreateFile, "run": RunProposal, "rename": RenameEdit}
    assert isinstance(p, kinds.get(block.form, AnchoredInsertEdit))
    if isinstance(p, RenameEdit):
        assert (p.path, p.version, p.old, p.new) == (path, "0123abcd", pieces[3], pieces[5])
    elif isinstance(p, SearchReplaceEdit):
        assert (p.path, p.version) == (path, "0123abcd")
        assert p.old == between(text, "<old>\n", "</old>") and p.content == between(text, "<new>\n", "</new>")
    elif isinstance(p, AnchoredInsertEdit):
        assert (p.path, p.version, p.where) == (path, "0123abcd", block.form.split()[1])
        assert p.content == between(text, "<new>\n", "</new>")
        if p.where in ("after", "before"):
            assert p.anchor == between(text, f"<{p.where}>\n", f"</{p.where}>")
    elif isinstance(p, CreateFile):
        assert p.path == pieces[1] and p.content == pieces[3]
    else:
        assert p.command == pieces[1].strip()
