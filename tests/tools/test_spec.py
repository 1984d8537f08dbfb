"""The tool registry: an explicit tuple, schemas derived from signatures and docstrings, loose argument typing."""

from __future__ import annotations

import inspect

import pytest

from tools import OFFERED, TOOLS, AnchoredInsertEdit, LineReplaceEdit, SearchReplaceEdit, tool_schemas
from tools.ops import by_name


def test_the_tools_are_the_v2_edits_rename_create_run_and_the_numbered_edits_still_read() -> None:
    assert [t.name for t in TOOLS] == ["search_replace_edit", "anchored_insert_edit", "rename_symbol", "create_file",
                                       "run", "single_line_edit", "line_replace_edit", "insert_after_edit"]
    assert [t.tag for t in TOOLS] == ["replace", "insert", "rename", "create", "run", "edit", "replace", "insert"]
    assert [t.name for t in OFFERED] == ["search_replace_edit", "anchored_insert_edit", "rename_symbol",
                                         "create_file", "run"]
    assert [s["function"]["name"] for s in tool_schemas()] == [t.name for t in OFFERED]


def test_schemas_follow_the_signatures_and_docstrings() -> None:
    for tool in TOOLS:
        fn = tool.schema()["function"]
        params = inspect.signature(tool.function).parameters
        assert fn["name"] == tool.function.__name__
        assert fn["description"] == inspect.getdoc(tool.function).split("\n")[0]
        assert list(fn["parameters"]["properties"]) == list(params)
        assert all(p["description"] for p in fn["parameters"]["properties"].values())
        assert fn["parameters"]["required"] == [n for n, p in params.items() if p.default is p.empty]
    replace, insert = (s["function"]["parameters"] for s in tool_schemas()[:2])
    assert list(replace["properties"]) == ["path", "version", "old", "new"] == replace["required"]
    assert replace["properties"]["old"]["type"] == "string"
    assert list(insert["properties"]) == ["path", "version", "after", "before", "at", "new"]
    assert insert["required"] == ["path", "version", "new"]
    assert insert["properties"]["at"]["enum"] == ["", "top", "end"]
    numbered = by_name("line_replace_edit").schema()["function"]["parameters"]["properties"]
    assert numbered["start"] == {"type": "integer", "description": "the first line to replace (1 is the first line)."}


def test_a_tag_both_formats_use_means_the_tool_whose_arguments_are_given() -> None:
    assert by_name("REPLACE") is by_name("search_replace_edit")
    assert by_name("replace", ["path", "version", "start", "end", "content"]) is by_name("line_replace_edit")
    assert by_name("insert", ["path", "version", "after", "new"]) is by_name("anchored_insert_edit")
    assert by_name("insert", ["path", "version", "after", "content"]) is by_name("insert_after_edit")
    assert by_name("nothing") is None


def test_build_coerces_numbers_and_names_what_is_missing() -> None:
    spec = by_name("line_replace_edit")
    p = spec.build({"path": "a", "version": "v", "start": " 3 ", "end": 4, "content": "x"})
    assert p == LineReplaceEdit("a", "v", 3, 4, "x\n")
    with pytest.raises(ValueError, match=r"^needs version= and end= and a body \(the content\)$"):
        spec.build({"path": "a", "start": 1})
    with pytest.raises(ValueError, match="start='x' is not a line number"):
        spec.build({"path": "a", "version": "v", "start": "x", "end": 1, "content": ""})


def test_build_of_the_v2_tools_canonicalises_copied_and_new_text_and_names_missing_parts() -> None:
    replace = by_name("search_replace_edit")
    assert replace.build({"path": "a", "version": "v", "old": "x", "new": "y\nz"}) == SearchReplaceEdit(
        "a", "v", "x\n", "y\nz\n")
    with pytest.raises(ValueError, match=r"^needs version= and a <new> part$"):
        replace.build({"path": "a", "old": "x"})
    with pytest.raises(ValueError, match="has an empty <old> part"):
        replace.build({"path": "a", "version": "v", "old": "", "new": "y"})
    insert = by_name("anchored_insert_edit")
    assert insert.build({"path": "a", "version": "v", "before": "x", "new": "y"}) == AnchoredInsertEdit(
        "a", "v", "before", "x\n", "y\n")
    assert insert.build({"path": "a", "version": "v", "at": " END ", "new": "y"}).where == "end"
    with pytest.raises(ValueError, match="has more than one of <after>, <before> and at="):
        insert.build({"path": "a", "version": "v", "after": "x", "at": "top", "new": "y"})
    with pytest.raises(ValueError, match=r"has at='middle'; write at=\"top\" or at=\"end\""):
        insert.build({"path": "a", "version": "v", "at": "middle", "new": "y"})


def test_the_tool_call_instructions_name_exactly_the_offered_tools_and_hold_no_block() -> None:
    from tools import TOOL_CALL_INSTRUCTIONS, parse_proposals

    named = {t.name for t in TOOLS if t.name in TOOL_CALL_INSTRUCTIONS}
    assert named == {t.name for t in OFFERED}
    assert parse_proposals(TOOL_CALL_INSTRUCTIONS).proposals == ()
