"""Parser tests, string in → proposals or errors out: the numbered block format (v1, still read), tolerance,
malformed input, JSON tool calls. Format v2 (copied lines) is in test_parse_v2.py."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tests.tools.support import errors, one
from tools import (
    CreateFile,
    InsertAfterEdit,
    LineReplaceEdit,
    RunProposal,
    SingleLineEdit,
    parse_proposals,
    parse_tool_calls,
    render,
)


def test_each_operation_parses_with_its_attributes_and_exact_body() -> None:
    text = """Here is the fix.
<edit path="app.py" version="3f9a1c2b" line="12">
    return total
</edit>
<replace path="app.py" version="3f9a1c2b" start="20" end="24">
def area(r):
    return r
</replace>
<insert path="app.py" version="3f9a1c2b" after="0">
import math
</insert>
<create path="tests/t.py">
x = 1
</create>
<run tab="tests">pytest -q</run>
Done."""
    result = parse_proposals(text)
    assert result.errors == ()
    assert result.proposals == (
        SingleLineEdit("app.py", "3f9a1c2b", 12, "    return total\n"),
        LineReplaceEdit("app.py", "3f9a1c2b", 20, 24, "def area(r):\n    return r\n"),
        InsertAfterEdit("app.py", "3f9a1c2b", 0, "import math\n"),
        CreateFile("tests/t.py", "x = 1\n"),
        RunProposal("tests", "pytest -q"),
    )


def test_empty_replace_body_deletes_and_a_blank_line_is_one_empty_line() -> None:
    deleted = one('<replace path="a" version="v" start="1" end="2">\n</replace>')
    assert deleted.new_lines() == []
    blank = one('<replace path="a" version="v" start="1" end="2">\n\n</replace>')
    assert blank.new_lines() == [""]


def test_inline_body_and_empty_single_line_edit_keeps_an_empty_line() -> None:
    assert one('<edit path="a" version="v" line="3">x = 2</edit>').new_lines() == ["x = 2"]
    assert one('<edit path="a" version="v" line="3">\n</edit>').new_lines() == [""]


def test_markdown_fences_around_blocks_and_inside_bodies_are_tolerated() -> None:
    text = '```xml\n<edit path="a.py" version="v" line="1">\n```python\n  y = 1\n```\n</edit>\n```'
    assert one(text).content == "  y = 1\n"


def test_stray_whitespace_quotes_case_and_long_tag_names_are_tolerated() -> None:
    p = one("<LINE_REPLACE_EDIT  path = 'a b.py'   version=V1  start=2 end = \"3\" >  \nz\n    </line_replace_edit>")
    assert p == LineReplaceEdit("a b.py", "V1", 2, 3, "z\n")


def test_crlf_answers_parse_like_lf_but_lone_cr_in_content_is_kept() -> None:
    assert one('<edit path="a" version="v" line="1">\r\nx\ry\r\n</edit>\r\n').content == "x\ry\n"


def test_indentation_is_kept_exactly_and_the_closing_tags_indent_is_not_content() -> None:
    block = '<insert path="a" version="v" after="2">\n\tif x:\n\t    y()\n  </insert>'
    assert one(block).content == "\tif x:\n\t    y()\n"


def test_unknown_attributes_are_ignored() -> None:
    assert one('<edit path="a" version="v" line="1" lang="python">q</edit>').line == 1


def test_unclosed_block_names_the_tag_and_line() -> None:
    assert errors('prose\n\n<edit path="a" version="v" line="1">\nx\n') == [
        "line 3: <edit> is not closed (expected </edit>)"]


def test_mismatched_close_tag_is_reported_as_unclosed() -> None:
    assert errors('<edit path="a" version="v" line="1">\nx\n</replace>') == [
        "line 1: <edit> is not closed (expected </edit>)"]


def test_a_forgotten_close_tag_does_not_swallow_the_next_block() -> None:
    text = '<edit path="a" version="v" line="1">\nx\n<edit path="a" version="v" line="2">\ny\n</edit>'
    result = parse_proposals(text)
    assert [str(e) for e in result.errors] == ["line 1: <edit> is not closed (expected </edit>)"]
    assert result.proposals == (SingleLineEdit("a", "v", 2, "y\n"),)


def test_a_self_closing_replace_deletes() -> None:
    assert one('<replace path="a" version="v" start="2" end="4"/>').content == ""
    result = parse_proposals('<replace path="a" version="v" start="2" end="4" />\n<run>ls</run>')
    assert result.proposals == (LineReplaceEdit("a", "v", 2, 4, ""), RunProposal("", "ls"))


def test_missing_attributes_are_named() -> None:
    assert errors('<replace path="a" start="1">\nx\n</replace>') == ["line 1: <replace> needs version= and end="]
    assert errors('<insert path="a" line="2">\nx\n</insert>') == ["line 1: <insert> needs version="]
    assert errors('<edit path="a" version="v">\nx\n</edit>') == ["line 1: <edit> needs line="]


def test_a_block_without_line_numbers_or_parts_is_told_the_v2_shape() -> None:
    assert errors('<replace path="a" version="v">\nx\n</replace>') == [
        "line 1: <replace> needs an <old> part (the lines to replace, copied from the file) and a <new> part"]
    assert errors('<insert path="a" version="v">\nx\n</insert>') == [
        'line 1: <insert> needs an <after> or a <before> part (a line copied from the file), or at="top" or '
        'at="end"; and a <new> part']


def test_bad_numbers_and_ranges_are_rejected_with_the_reason() -> None:
    assert errors('<edit path="a" version="v" line="twelve">x</edit>') == [
        "line 1: <edit> line='twelve' is not a line number"]
    assert errors('<edit path="a" version="v" line="0">x</edit>') == ["line 1: <edit> line=0 must be 1 or more"]
    assert errors('<replace path="a" version="v" start="5" end="3">x</replace>') == [
        "line 1: <replace> end=3 is before start=5"]
    assert errors('<insert path="a" version="v" after="-1">x</insert>') == [
        "line 1: <insert> after=-1 must be 0 or more"]


def test_unreadable_and_duplicate_attributes_are_rejected() -> None:
    assert errors('<edit path="a" version="v" line="1" @@>x</edit>') == [
        "line 1: <edit> has an attribute I cannot read: '@@' (write name=\"value\")"]
    assert errors('<edit path="a" path="b" version="v" line="1">x</edit>') == ["line 1: <edit> has path= twice"]


def test_a_bad_block_does_not_hide_the_good_ones() -> None:
    result = parse_proposals('<edit path="a" line="1">x</edit>\n<edit path="a" version="v" line="2">y</edit>')
    assert [str(e) for e in result.errors] == ["line 1: <edit> needs version="]
    assert result.proposals == (SingleLineEdit("a", "v", 2, "y\n"),)


def test_empty_run_command_is_an_error_and_a_run_without_tab_uses_the_default() -> None:
    assert errors("<run tab='x'>  </run>") == ["line 1: <run> the command is empty"]
    assert one("<run>make test</run>") == RunProposal("", "make test")


def test_prose_without_blocks_proposes_nothing() -> None:
    result = parse_proposals("The bug is on line 3: `x < y` should be `x <= y`.")
    assert result.proposals == () and result.errors == ()


def test_openai_tool_call_json_is_accepted_as_text_and_as_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {
        "name": "line_replace_edit",
        "arguments": json.dumps({"path": "a.py", "version": "abcd0123", "start": 2, "end": "3", "content": "q\nr"})}}
    expected = LineReplaceEdit("a.py", "abcd0123", 2, 3, "q\nr\n")
    assert parse_proposals(json.dumps({"tool_calls": [call]})).proposals == (expected,)
    assert parse_proposals(f"Calling:\n```json\n{json.dumps(call)}\n```\n").proposals == (expected,)
    assert parse_tool_calls([call]).proposals == (expected,)
    assert parse_tool_calls([{"name": "create_file", "arguments": {"path": "n", "content": ""}}]).proposals == (
        CreateFile("n", ""),)


def test_malformed_tool_calls_are_named() -> None:
    bad = parse_tool_calls([
        {"function": {"name": "delete_everything", "arguments": "{}"}},
        {"function": {"name": "single_line_edit", "arguments": "{not json"}},
        {"function": {"name": "single_line_edit", "arguments": {"path": "a", "version": "v", "line": True,
                                                                "content": "x"}}},
        {"function": {"name": "run", "arguments": {"command": 3}}},
    ])
    assert bad.proposals == ()
    assert [str(e) for e in bad.errors] == [
        "line 1: <delete_everything> is not a tool I know (the tools are: search_replace_edit, anchored_insert_edit, "
        "rename_symbol, create_file, run): 'delete_everything'",
        "line 2: <single_line_edit> has arguments that are not valid JSON (Expecting property name enclosed in "
        "double quotes at char 1)",
        "line 3: <single_line_edit> line=True is not a line number",
        "line 4: <run> command must be text, not int",
    ]


def test_json_that_is_not_a_tool_call_is_just_prose() -> None:
    assert parse_proposals('{"answer": 42}') == parse_proposals("")


lines = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r<"), max_size=20),
                 max_size=5)


@given(st.sampled_from(["edit", "replace", "insert", "create"]), lines, st.integers(1, 500))
def test_render_then_parse_gives_the_proposal_back(kind: str, body: list[str], n: int) -> None:
    content = "".join(line + "\n" for line in body)
    proposal = {
        "edit": SingleLineEdit("d/a.py", "0123abcd", n, content),
        "replace": LineReplaceEdit("d/a.py", "0123abcd", n, n + 2, content),
        "insert": InsertAfterEdit("d/a.py", "0123abcd", n - 1, content),
        "create": CreateFile("d/a.py", content),
    }[kind]
    assert parse_proposals(render(proposal)).proposals == (proposal,)


@given(st.text(max_size=300))
def test_the_parser_never_raises_on_arbitrary_text(text: str) -> None:
    parse_proposals(text)
    parse_proposals('<edit path="a" version="v" line="1">' + text)
    parse_proposals("<replace " + text + ">\n" + text + "</replace>")


