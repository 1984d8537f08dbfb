"""Parser tests of format v2, where an edit names its lines by copying them: every form, the part rules,
shape errors a model can act on, the instructions, and render ↔ parse."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tests.tools.support import errors, one
from tools import (
    INSTRUCTIONS,
    AnchoredInsertEdit,
    CreateFile,
    LineReplaceEdit,
    RenameEdit,
    RunProposal,
    SearchReplaceEdit,
    parse_proposals,
    parse_tool_calls,
    render,
)
from tools.format import EXAMPLE_PATH, EXAMPLE_VERSION


def test_each_form_parses_with_its_copied_and_new_lines() -> None:
    text = """I will change the colour.
<replace path="d/x.txt" version="0123abcd">
<old>
colour = "red"
    size = 3
</old>
<new>
colour = "blue"
</new>
</replace>
<insert path="d/x.txt" version="0123abcd">
<after>
import os
</after>
<new>
import sys
</new>
</insert>
<insert path="d/x.txt" version="0123abcd">
<before>
def main():
</before>
<new>

</new>
</insert>
<insert path="d/x.txt" version="0123abcd" at="top">
<new>
# top
</new>
</insert>
<insert path="d/x.txt" version="0123abcd" at="end">
<new>
# end
</new>
</insert>
<create path="d/new.txt">
hello
</create>
<run>ls</run>
That is all."""
    assert parse_proposals(text).errors == ()
    assert parse_proposals(text).proposals == (
        SearchReplaceEdit("d/x.txt", "0123abcd", 'colour = "red"\n    size = 3\n', 'colour = "blue"\n'),
        AnchoredInsertEdit("d/x.txt", "0123abcd", "after", "import os\n", "import sys\n"),
        AnchoredInsertEdit("d/x.txt", "0123abcd", "before", "def main():\n", "\n"),
        AnchoredInsertEdit("d/x.txt", "0123abcd", "top", "", "# top\n"),
        AnchoredInsertEdit("d/x.txt", "0123abcd", "end", "", "# end\n"),
        CreateFile("d/new.txt", "hello\n"),
        RunProposal("", "ls"),
    )


def test_an_empty_new_part_deletes_and_a_blank_line_in_it_is_one_empty_line() -> None:
    assert one('<replace path="a" version="v">\n<old>\nx\n</old>\n<new>\n</new>\n</replace>').content == ""
    assert one('<replace path="a" version="v"><old>x</old><new/></replace>').content == ""
    assert one('<replace path="a" version="v">\n<old>\nx\n</old>\n<new>\n\n</new>\n</replace>').content == "\n"


def test_parts_may_be_inline_indented_fenced_in_any_order_and_the_close_tags_indent_is_not_content() -> None:
    p = one('<replace path="a" version="v">\n  <new>\n```python\n\ty = 2\n```\n  </new>\n  <old>x = 1</old>\n'
            '</replace>')
    assert p == SearchReplaceEdit("a", "v", "x = 1\n", "\ty = 2\n")


def test_a_new_text_may_hold_tags_that_close_no_part_or_block_of_its_own() -> None:
    p = one('<replace path="a.html" version="v">\n<old>\n<p>old</p>\n</old>\n<new>\n<p>a </old> b</p>\n'
            '</replace>\n</new>\n</replace>')
    assert p.content == "<p>a </old> b</p>\n</replace>\n"


def test_numbers_on_a_block_with_parts_are_ignored_the_copied_lines_decide() -> None:
    p = one('<replace path="a" version="v" start="9" end="12">\n<old>\nx\n</old>\n<new>\ny\n</new>\n</replace>')
    assert p == SearchReplaceEdit("a", "v", "x\n", "y\n")


def test_an_insert_whose_anchor_is_an_attribute_is_told_to_copy_it_into_a_part() -> None:
    assert errors('<insert path="a" version="v" after="3">\n<new>\ny\n</new>\n</insert>') == [
        'line 1: <insert> needs an <after> or a <before> part (a line copied from the file), or at="top" or '
        'at="end"; and a <new> part']


def test_missing_and_empty_parts_are_named() -> None:
    assert errors('<replace path="a" version="v">\n<old>\nx\n</old>\n</replace>') == [
        "line 1: <replace> needs a <new> part"]
    assert errors('<replace path="a" version="v">\n<old>\n</old>\n<new>\ny\n</new>\n</replace>') == [
        "line 1: <replace> has an empty <old> part; copy into it the lines to replace (to add lines, use <insert>)"]
    assert errors('<insert path="a" version="v">\n<after>\nx\n</after>\n<before>\nz\n</before>\n<new>\ny\n</new>\n'
                  '</insert>') == ["line 1: <insert> has more than one of <after>, <before> and at=; give one"]


def test_a_part_given_twice_or_text_between_parts_is_an_error_and_the_next_block_still_parses() -> None:
    text = ('<replace path="a" version="v">\n<old>\nx\n</old>\n<old>\ny\n</old>\n<new>\nz\n</new>\n</replace>\n'
            '<replace path="a" version="v">\n<old>\nx\n</old>\nwith:\n<new>\nz\n</new>\n</replace>\n'
            '<run>ls</run>')
    result = parse_proposals(text)
    assert [str(e) for e in result.errors] == [
        "line 1: <replace> has <old> twice",
        "line 12: <replace> has text outside its parts: 'with:' (only <old>, <new>, <after>, <before> parts go "
        "inside <replace>)",
    ]
    assert result.proposals == (RunProposal("", "ls"),)


def test_a_forgotten_part_close_does_not_swallow_the_next_block() -> None:
    text = ('<replace path="a" version="v">\n<old>\nx\n</old>\n<new>\ny\n</replace>\n'
            '<replace path="a" version="v">\n<old>\nq\n</old>\n<new>\nr\n</new>\n</replace>')
    result = parse_proposals(text)
    assert [str(e) for e in result.errors] == [
        "line 1: <replace> has a <new> part that is not closed (expected </new>)"]
    assert result.proposals == (SearchReplaceEdit("a", "v", "q\n", "r\n"),)
    result = parse_proposals('<replace path="a" version="v">\n<old>\nx\n<insert path="a" version="v" at="top">\n'
                             '<new>\nr\n</new>\n</insert>')
    assert [str(e) for e in result.errors] == [
        "line 1: <replace> has a <old> part that is not closed (expected </old>)"]
    assert result.proposals == (AnchoredInsertEdit("a", "v", "top", "", "r\n"),)


def test_a_block_missing_its_own_close_is_reported() -> None:
    assert errors('<replace path="a" version="v">\n<old>\nx\n</old>\n<new>\ny\n</new>\n') == [
        "line 1: <replace> is not closed (expected </replace>)"]


def test_a_create_written_with_a_new_part_takes_its_text_but_not_other_parts() -> None:
    assert one('<create path="n.txt">\n<new>\nhello\n</new>\n</create>') == CreateFile("n.txt", "hello\n")
    assert errors('<create path="n.txt">\n<old>\nx\n</old>\n</create>') == [
        "line 1: <create> takes its text as its body, not in <old> parts"]


def test_long_tool_names_and_case_work_as_tags() -> None:
    p = one('<Search_Replace_Edit path="a" version="v">\n<OLD>\nx\n</OLD>\n<New>\ny\n</new>\n</search_replace_edit>')
    assert p == SearchReplaceEdit("a", "v", "x\n", "y\n")
    assert one('<anchored_insert_edit path="a" version="v" at="top"><new>y</new></anchored_insert_edit>') == \
        AnchoredInsertEdit("a", "v", "top", "", "y\n")


def test_a_rename_block_has_attributes_only_and_renders_back() -> None:
    block = '<rename path="a.py" version="v" from="x" to="y"/>'
    assert one(block) == one('<rename path="a.py" version="v" from="x" to="y"></rename>') == \
        one("<rename_symbol path='a.py' version='v' name='x' new_name='y'/>") == RenameEdit("a.py", "v", "x", "y")
    assert render(one(block)) == block
    assert errors('<rename path="a.py" version="v" from="x"/>') == ["line 1: <rename> needs to="]
    assert errors('<rename path="a.py" version="v" from="x" to="y">z</rename>')[0].startswith(
        "line 1: <rename> takes no text; needs from=")


def test_the_numbered_format_still_parses_beside_v2() -> None:
    result = parse_proposals('<replace path="a" version="v" start="2" end="3">\nz\n</replace>\n'
                             '<replace path="a" version="v">\n<old>\nx\n</old>\n<new>\ny\n</new>\n</replace>')
    assert result.errors == ()
    assert result.proposals == (LineReplaceEdit("a", "v", 2, 3, "z\n"), SearchReplaceEdit("a", "v", "x\n", "y\n"))


def test_v2_tool_calls_parse_by_function_name_and_by_tag() -> None:
    calls = [
        {"function": {"name": "search_replace_edit",
                      "arguments": json.dumps({"path": "a", "version": "v", "old": "x\n", "new": ""})}},
        {"function": {"name": "anchored_insert_edit",
                      "arguments": {"path": "a", "version": "v", "after": "x", "new": "y"}}},
        {"function": {"name": "insert", "arguments": {"path": "a", "version": "v", "at": "end", "new": "y"}}},
        {"function": {"name": "rename_symbol", "arguments": {"path": "a", "version": "v", "name": "x",
                                                             "new_name": "y"}}},
    ]
    assert parse_tool_calls(calls).proposals == (
        SearchReplaceEdit("a", "v", "x\n", ""),
        AnchoredInsertEdit("a", "v", "after", "x\n", "y\n"),
        AnchoredInsertEdit("a", "v", "end", "", "y\n"),
        RenameEdit("a", "v", "x", "y"),
    )
    assert parse_proposals(json.dumps({"tool_calls": calls})).proposals == parse_tool_calls(calls).proposals


def test_the_instructions_teach_exactly_the_v2_forms_the_parser_reads_with_example_values() -> None:
    result = parse_proposals(INSTRUCTIONS)
    assert result.errors == ()
    kinds = [type(p).__name__ for p in result.proposals]
    assert kinds == ["SearchReplaceEdit", "AnchoredInsertEdit", "AnchoredInsertEdit", "RenameEdit", "CreateFile",
                     "RunProposal"]
    assert [p.where for p in result.proposals if isinstance(p, AnchoredInsertEdit)] == ["after", "top"]
    edits = [p for p in result.proposals if not isinstance(p, CreateFile | RunProposal)]
    assert {(p.path, p.version) for p in edits} == {(EXAMPLE_PATH, EXAMPLE_VERSION)}
    assert all(p.path.startswith("example/") for p in result.proposals if isinstance(p, CreateFile))
    for numbered_word in ('line="', 'start="', "after=\""):
        assert numbered_word not in INSTRUCTIONS


lines = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r<"), max_size=20),
                 max_size=5)


@given(st.sampled_from(["replace", "after", "before", "top", "end"]), lines, lines)
def test_render_then_parse_gives_a_v2_proposal_back(form: str, old: list[str], new: list[str]) -> None:
    copied = "".join(line + "\n" for line in old) or "x\n"
    content = "".join(line + "\n" for line in new)
    proposal = SearchReplaceEdit("d/a.py", "0123abcd", copied, content) if form == "replace" else \
        AnchoredInsertEdit("d/a.py", "0123abcd", form, copied if form in ("after", "before") else "", content)
    assert parse_proposals(render(proposal)).proposals == (proposal,)


@given(st.text(max_size=300))
def test_the_parser_never_raises_on_arbitrary_v2_shaped_text(text: str) -> None:
    parse_proposals('<replace path="a" version="v">\n<old>\n' + text)
    parse_proposals('<insert path="a" version="v">\n<after>\n' + text + "</after>\n<new>" + text + "</insert>")
    parse_proposals("<replace " + text + "><old>" + text + "</old></replace>")


def test_an_edit_tag_written_with_parts_is_read_by_its_parts() -> None:
    assert one('<edit path="a" version="v">\n<old>\nx\n</old>\n<new>\ny\n</new>\n</edit>') == SearchReplaceEdit(
        "a", "v", "x\n", "y\n")
    assert one('<edit path="a" version="v">\n<before>\nx\n</before>\n<new>\ny\n</new>\n</edit>') == \
        AnchoredInsertEdit("a", "v", "before", "x\n", "y\n")


def test_tool_calls_in_qwen_tool_call_tags_are_read_from_text() -> None:
    call = {"name": "search_replace_edit", "arguments": {"path": "a", "version": "v", "old": "x", "new": "y"}}
    text = f"I will fix it.\n<tool_call>\n{json.dumps(call)}\n</tool_call>\n<tool_call>\n" + json.dumps(
        {"name": "run", "arguments": {"command": "ls"}}) + "\n</tool_call>"
    assert parse_proposals(text).proposals == (SearchReplaceEdit("a", "v", "x\n", "y\n"), RunProposal("", "ls"))
