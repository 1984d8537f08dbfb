"""Finding copied lines in a file: exact first, tolerance only when unambiguous, and refusals a model can act on."""

from __future__ import annotations

import pytest

from tools import AnchoredInsertEdit, InsertAfterEdit, LineReplaceEdit, SearchReplaceEdit
from tools.anchors import AnchorError, find_run, resolve

FILE = [
    "import os",
    "",
    "def area(r):",
    "    return 3.14 * r * r",
    "",
    "def perimeter(r):",
    "    return 2 * 3.14 * r",
    "",
    "def area_twice(r):",
    "    return 3.14 * r * r",
]


def refusal(copied: list[str], lines: list[str] = FILE, part: str = "<old>") -> str:
    with pytest.raises(AnchorError) as exc:
        find_run(lines, copied, part)
    return str(exc.value)


def test_an_exact_copy_found_once_gives_its_range_and_keeps_the_new_text() -> None:
    run = find_run(FILE, ["def perimeter(r):", "    return 2 * 3.14 * r"], "<old>")
    assert (run.start, run.end, run.how) == (5, 7, "")
    assert run.adapt(["  x"]) == ["  x"]


def test_an_ambiguous_copy_is_refused_saying_where_it_occurs_and_to_copy_more() -> None:
    assert refusal(["    return 3.14 * r * r"]) == (
        "the <old> line '    return 3.14 * r * r' occurs 2 times (lines 4, 10); copy the line before or after it "
        "too, so that the copied lines occur once")
    assert refusal([""], part="<after>").startswith(
        "the <after> line '' occurs 3 times (lines 2, 5, 8)")
    many = ["x", "y"] * 7
    assert refusal(["x", "y"], many) == (
        "the 2 <old> lines occur 7 times (lines 1-2, 3-4, 5-6, 7-8, 9-10, …); copy one more line before or after "
        "them, so that they occur once")


def test_more_context_makes_an_ambiguous_copy_unique() -> None:
    run = find_run(FILE, ["def area_twice(r):", "    return 3.14 * r * r"], "<old>")
    assert (run.start, run.end) == (8, 10)


def test_a_missing_line_is_refused_with_the_closest_lines_of_the_file() -> None:
    assert refusal(["def area(r):", "    retrun 3.14 * r * r"]) == (
        "the <old> line '    retrun 3.14 * r * r' is not in the file; closest: line 4 '    return 3.14 * r * r', "
        "line 7 '    return 2 * 3.14 * r'. Copy lines exactly as the file shows them")
    assert refusal(["completely different"]) == (
        "the <old> line 'completely different' is not in the file; no line of the file is close to it. "
        "Copy lines exactly as the file shows them")


def test_lines_that_exist_but_not_one_after_another_say_where_the_copy_stops_matching() -> None:
    assert refusal(["def area(r):", "    return 2 * 3.14 * r"]) == (
        "the 2 <old> lines match line 3, but the next copied line is '    return 2 * 3.14 * r' where line 4 is "
        "'    return 3.14 * r * r'; copy consecutive lines exactly")
    assert refusal(["def area_twice(r):", "    return 3.14 * r * r", "import os"]).endswith(
        "match lines 9-10, but the next copied line is 'import os' where the file ends there; copy consecutive "
        "lines exactly")


def test_trailing_whitespace_is_tolerated_when_that_finds_the_lines_once() -> None:
    run = find_run(FILE, ["def perimeter(r):   ", "    return 2 * 3.14 * r\t"], "<old>")
    assert (run.start, run.end, run.how) == (5, 7, "trailing whitespace ignored")
    assert refusal(["    return 3.14 * r * r  "]).startswith(
        "the <old> line '    return 3.14 * r * r' occurs 2 times (trailing whitespace ignored) (lines 4, 10)")


def test_an_exact_match_wins_over_tolerant_ones() -> None:
    lines = ["a ", "a"]
    run = find_run(lines, ["a"], "<old>")
    assert (run.start, run.how) == (1, "")


def test_a_consistent_indentation_shift_is_tolerated_and_applied_to_the_new_text() -> None:
    lines = ["class A:", "    def f(self):", "        return 1", "", "        # done"]
    run = find_run(lines, ["def f(self):", "    return 1"], "<old>")
    assert (run.start, run.end, run.how) == (1, 3, "indentation shifted by '    '")
    assert run.adapt(["def f(self):", "    return 2", ""]) == ["    def f(self):", "        return 2", ""]
    over = find_run(lines, ["        def f(self):", "            return 1"], "<old>")
    assert (over.start, over.end) == (1, 3)
    assert over.adapt(["        def g(self):", "            pass"]) == ["    def g(self):", "        pass"]


def test_tabs_are_indentation_like_any_other_and_must_shift_consistently() -> None:
    lines = ["if x:", "\tif y:", "\t\tz()"]
    run = find_run(lines, ["if y:", "\tz()"], "<old>")
    assert (run.start, run.end) == (1, 3) and run.adapt(["if q:", "\tw()"]) == ["\tif q:", "\t\tw()"]
    assert refusal(["if y:", "z()"], lines).startswith("the 2 <old> lines match lines 2-3 only with other indentation")


def test_an_indentation_shift_found_twice_is_ambiguous() -> None:
    lines = ["    x = 1", "    y = 2", "        x = 1", "        y = 2"]
    assert refusal(["x = 1", "y = 2"], lines).startswith(
        "the 2 <old> lines occur 2 times (indentation ignored) (lines 1-2, 3-4)")


def test_line_number_prefixes_copied_from_the_prompt_are_removed_from_copy_and_new_text() -> None:
    run = find_run(FILE, ["  6| def perimeter(r):", "  7|     return 2 * 3.14 * r"], "<old>")
    assert (run.start, run.end, run.how) == (5, 7, "line numbers removed")
    assert run.adapt(["  6| def perimeter(r):", "  7|     return 2 * math.pi * r", "    pass"]) == [
        "def perimeter(r):", "    return 2 * math.pi * r", "    pass"]
    blank = find_run(FILE, ["1| import os", "2|", "3| def area(r):"], "<old>")
    assert (blank.start, blank.end) == (0, 3)


def test_a_file_that_really_holds_numbered_lines_matches_them_exactly() -> None:
    lines = ["1| a", "a"]
    run = find_run(lines, ["1| a"], "<old>")
    assert (run.start, run.how) == (0, "")


def test_resolve_turns_each_form_into_the_numbered_edit_of_the_found_range() -> None:
    replace = SearchReplaceEdit("g.py", "v", "def area(r):\n    return 3.14 * r * r\n", "def area(r):\n    pass\n")
    assert resolve(replace, FILE) == (LineReplaceEdit("g.py", "v", 3, 4, "def area(r):\n    pass\n"), "")
    delete = SearchReplaceEdit("g.py", "v", "import os\n", "")
    assert resolve(delete, FILE)[0] == LineReplaceEdit("g.py", "v", 1, 1, "")
    after = AnchoredInsertEdit("g.py", "v", "after", "def perimeter(r):\n", '    """P."""\n')
    assert resolve(after, FILE)[0] == InsertAfterEdit("g.py", "v", 6, '    """P."""\n')
    before = AnchoredInsertEdit("g.py", "v", "before", "def perimeter(r):\n    return 2 * 3.14 * r\n", "# p\n")
    assert resolve(before, FILE)[0] == InsertAfterEdit("g.py", "v", 5, "# p\n")
    assert resolve(AnchoredInsertEdit("g.py", "v", "top", "", "x\n"), FILE)[0] == InsertAfterEdit("g.py", "v", 0, "x\n")
    assert resolve(AnchoredInsertEdit("g.py", "v", "end", "", "x\n"), FILE)[0] == InsertAfterEdit(
        "g.py", "v", 10, "x\n")


def test_an_insert_into_an_empty_file_is_told_to_use_the_top() -> None:
    with pytest.raises(AnchorError, match=r'^the file is empty, so it has no <after> line; insert with at="top"$'):
        resolve(AnchoredInsertEdit("e", "v", "after", "x\n", "y\n"), [])


def test_part_of_a_line_copied_once_replaces_that_part_and_keeps_the_rest_of_the_line() -> None:
    lines = ["def area(r):", "    return 3.14 * r * r  # m2", "x = 1"]
    run = find_run(lines, ["3.14 * r * r"], "<old>")
    assert (run.start, run.end, run.how) == (1, 2, "copied as part of line 2")
    assert run.adapt(["math.pi * r * r"]) == ["    return math.pi * r * r  # m2"]
    assert run.adapt(["(", "  math.pi)"]) == ["    return (", "  math.pi)  # m2"]
    assert run.adapt([]) == ["    return   # m2"]
    span = find_run(lines, ["(r):", "    return 3.14"], "<old>")
    assert (span.start, span.end) == (0, 2)
    assert span.adapt(["(d):", "    return d"]) == ["def area(d):", "    return d * r * r  # m2"]
    whole_rest = find_run(["    x = 1"], ["x = 1"], "<old>")
    assert whole_rest.how.startswith("indentation")  # a whole line without its indent is not a part


def test_deleting_the_whole_text_of_a_partly_copied_line_removes_the_line() -> None:
    run = find_run(["x", "  a", "b  ", "y"], [" a", "b "], "<old>")
    assert (run.start, run.end, run.how) == (1, 3, "copied as part of lines 2-3")
    assert run.adapt([]) == []


def test_a_part_of_a_line_found_more_than_once_is_ambiguous() -> None:
    assert refusal(["3.14"]) == (
        "the <old> line '3.14' occurs 3 times (part of a line) (lines 4, 7, 10); copy the line before or after it "
        "too, so that the copied lines occur once")
