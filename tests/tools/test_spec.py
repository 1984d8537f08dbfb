"""The tool registry: an explicit tuple, schemas derived from signatures and docstrings, loose argument typing."""

from __future__ import annotations

import inspect

import pytest

from tools import TOOLS, LineReplaceEdit, tool_schemas
from tools.ops import by_name


def test_the_tools_are_the_four_edits_and_run() -> None:
    assert [t.name for t in TOOLS] == ["single_line_edit", "line_replace_edit", "insert_after_edit", "create_file",
                                       "run"]
    assert [t.tag for t in TOOLS] == ["edit", "replace", "insert", "create", "run"]


def test_schemas_follow_the_signatures_and_docstrings() -> None:
    for tool, schema in zip(TOOLS, tool_schemas(), strict=True):
        fn = schema["function"]
        params = inspect.signature(tool.function).parameters
        assert fn["name"] == tool.function.__name__
        assert fn["description"] == inspect.getdoc(tool.function).split("\n")[0]
        assert list(fn["parameters"]["properties"]) == list(params)
        assert all(p["description"] for p in fn["parameters"]["properties"].values())
        assert fn["parameters"]["required"] == [n for n, p in params.items() if p.default is p.empty]
    replace = tool_schemas()[1]["function"]["parameters"]["properties"]
    assert replace["start"] == {"type": "integer", "description": "the first line to replace (1 is the first line)."}


def test_build_coerces_numbers_and_names_what_is_missing() -> None:
    spec = by_name("REPLACE")
    assert spec is by_name("line_replace_edit")
    p = spec.build({"path": "a", "version": "v", "start": " 3 ", "end": 4, "content": "x"})
    assert p == LineReplaceEdit("a", "v", 3, 4, "x\n")
    with pytest.raises(ValueError, match=r"^needs version= and end= and a body \(the content\)$"):
        spec.build({"path": "a", "start": 1})
    with pytest.raises(ValueError, match="start='x' is not a line number"):
        spec.build({"path": "a", "version": "v", "start": "x", "end": 1, "content": ""})
