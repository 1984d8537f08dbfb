"""Preview text: visible control characters, the diff (checked by applying it back), summaries, warnings."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tools import InsertAfterEdit, LineReplaceEdit, SingleLineEdit, visible
from tools.preview import summarize, unified_diff, warnings_for


def test_visible_shows_controls_c1_bidi_and_invisibles_and_keeps_tabs_and_text() -> None:
    assert visible("a\x1b[1A\x1b[2K\tb\r\x00\x7f") == "a␛[1A␛[2K\tb␍␀␡"
    assert visible("\x9b31m \u202eevil\u2066 zero\u200bwidth \u2028") == (
        "⟨U+009B⟩31m ⟨U+202E⟩evil⟨U+2066⟩ zero⟨U+200B⟩width ⟨U+2028⟩")
    assert visible("naïve 日本 é") == "naïve 日本 é"


@given(st.text())
def test_visible_output_holds_no_control_or_bidi_character(text: str) -> None:
    shown = visible(text)
    assert not re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b-\u200f\u2028\u2029]", shown)


def _patch(old: list[str], diff: str) -> list[str]:
    """Apply a unified diff produced by unified_diff to `old` (a tiny reference patcher)."""
    hunks: list[tuple[int, str | None, list[str]]] = []
    for line in diff.splitlines()[2:]:
        m = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", line)
        if m:
            hunks.append((int(m.group(1)), m.group(2), []))
        else:
            hunks[-1][2].append(line)
    out, pos = [], 0
    for start, count, body in hunks:
        first = start - 1 if count != "0" else start
        out += old[pos:first]
        pos = first
        for line in body:
            if line[0] in " -":
                assert old[pos] == line[1:]
                pos += 1
            if line[0] in " +":
                out.append(line[1:])
    return out + old[pos:]


@given(st.lists(st.sampled_from("abc"), max_size=30), st.data())
def test_the_diff_applied_to_the_old_lines_gives_the_new_ones(old: list[str], data: st.DataObject) -> None:
    a = data.draw(st.integers(0, len(old)))
    b = data.draw(st.integers(a, len(old)))
    new = old[:a] + data.draw(st.lists(st.sampled_from("abcd"), max_size=4)) + old[b:]
    assert _patch(old, unified_diff("f.txt", old, new)) == new


def test_diff_of_an_edit_deep_in_a_long_file_has_real_line_numbers() -> None:
    old = [f"l{i}" for i in range(1, 1001)]
    new = [*old[:499], "changed", *old[500:]]
    assert unified_diff("f", old, new).splitlines()[2:] == [
        "@@ -497,7 +497,7 @@", " l497", " l498", " l499", "-l500", "+changed", " l501", " l502", " l503"]


def test_new_file_diff_and_visible_path() -> None:
    assert unified_diff("n\x1b.txt", None, ["x"]) == "--- /dev/null\n+++ b/n␛.txt\n@@ -0,0 +1 @@\n+x\n"


def test_summaries_count_replaced_inserted_and_deleted_lines() -> None:
    assert summarize([(2, 5, 3)]) == "replaces 3 lines"
    assert summarize([(2, 5, 1), (7, 7, 2), (9, 10, 0)]) == "replaces 3 lines with 1, inserts 2 lines, deletes 1 line"
    assert summarize([(0, 1, 1)]) == "replaces 1 line"


def test_shrink_warning_needs_ten_lines_and_a_net_loss_of_over_half() -> None:
    edit = [LineReplaceEdit("f", "v", 1, 9, "")]
    assert warnings_for(9, [(0, 9, 0)], edit) == ()
    assert warnings_for(10, [(0, 6, 0)], edit) == ("removes 6 of its 10 lines",)
    assert warnings_for(10, [(0, 5, 0)], edit) == ()
    assert warnings_for(10, [(0, 10, 10)], edit) == ()  # a rewrite of the same size is not a removal


def test_placeholder_warnings() -> None:
    for text in ["# ... rest of code ...", "// existing code unchanged", "    # ...", "<!-- ... -->",
                 "/* remaining implementation */", "code remains unchanged", "-- …"]:
        assert warnings_for(3, [(0, 1, 1)], [SingleLineEdit("f", "v", 2, text + "\n")]), text
    for text in ["x = ...", "def f(): ...", "print('rest')", "return rest_of_list", "if x:"]:
        assert warnings_for(3, [(0, 1, 1)], [InsertAfterEdit("f", "v", 0, text + "\n")]) == (), text
