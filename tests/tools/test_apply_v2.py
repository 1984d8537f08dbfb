"""Format v2 through plan and apply on real files: copied lines are found in the version the model saw, and
every guarantee of the tools contract holds for them (confirm, all or nothing, stale refusal, bytes, undo).

Each refusal asserts that nothing on disk changed and no journal entry was written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.support import apply_text, tree_state, v, write
from tools import (
    AnchoredInsertEdit,
    Journal,
    Plan,
    SearchReplaceEdit,
    accept_all,
    apply_batch,
    parse_proposals,
    plan_batch,
    refuse_all,
)

GEO = b"import os\n\ndef area(r):\n    return 3.14 * r * r\n\ndef perimeter(r):\n    return 2 * 3.14 * r\n"






def replace(path: Path, old: str, new: str, version: str | None = None) -> str:
    return (f'<replace path="{path.name}" version="{version or v(path)}">\n<old>\n{old}</old>\n<new>\n{new}</new>\n'
            "</replace>\n")




def refused(root: Path, text: str, journal: Journal) -> str:
    before = tree_state(root)
    result = apply_text(root, text, journal)
    assert result.status == "refused", result.message()
    assert tree_state(root) == before and journal.entries() == []
    return result.message()


def test_the_issue_request_as_v2_blocks_gives_exact_bytes_and_undoes(ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    ver = v(f)
    result = apply_text(ws, f"""Use math.pi:
<insert path="geo.py" version="{ver}" at="top">
<new>
import math
</new>
</insert>
<replace path="geo.py" version="{ver}">
<old>
    return 3.14 * r * r
</old>
<new>
    return math.pi * r * r
</new>
</replace>
<replace path="geo.py" version="{ver}">
<old>
    return 2 * 3.14 * r
</old>
<new>
    return 2 * math.pi * r
</new>
</replace>""", journal)
    assert result.status == "applied", result.message()
    assert f.read_bytes() == GEO.replace(b"3.14", b"math.pi").replace(b"import os", b"import math\nimport os")
    assert result.plan.changes[0].summary == "replaces 2 lines, inserts 1 line"
    assert journal.undo_last().ok and f.read_bytes() == GEO


def test_insert_after_before_and_at_the_end_and_delete(ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    ver = v(f)
    result = apply_batch([
        AnchoredInsertEdit("geo.py", ver, "after", "import os\n", "import sys\n"),
        AnchoredInsertEdit("geo.py", ver, "before", "def perimeter(r):\n", "# perimeter\n"),
        AnchoredInsertEdit("geo.py", ver, "end", "", "# end\n"),
        SearchReplaceEdit("geo.py", ver, "def area(r):\n    return 3.14 * r * r\n\n", ""),
    ], ws, journal=journal, confirm=accept_all)
    assert result.status == "applied", result.message()
    assert f.read_bytes() == (b"import os\nimport sys\n\n# perimeter\ndef perimeter(r):\n    return 2 * 3.14 * r\n"
                              b"# end\n")


def test_a_missing_anchor_refuses_the_whole_batch_with_the_closest_lines(ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    g = write(ws / "other.txt", b"a\n")
    message = refused(ws, replace(g, "a\n", "b\n") + replace(f, "    retrun 3.14 * r * r\n", "x\n"), journal)
    assert message == ("not applied: geo.py: the <old> line '    retrun 3.14 * r * r' is not in the file; closest: "
                       "line 4 '    return 3.14 * r * r', line 7 '    return 2 * 3.14 * r'. Copy lines exactly as "
                       "the file shows them")


def test_an_ambiguous_anchor_is_refused_and_every_bad_copy_of_a_file_is_named(ws: Path, journal: Journal) -> None:
    f = write(ws / "t.py", b"x = 1\ny = 2\nx = 1\n")
    plan = plan_batch(parse_proposals(replace(f, "x = 1\n", "x = 3\n") + replace(f, "z\n", "")).proposals, ws)
    assert plan.errors == (
        "t.py: the <old> line 'x = 1' occurs 2 times (lines 1, 3); copy the line before or after it too, so that "
        "the copied lines occur once",
        "t.py: the <old> line 'z' is not in the file; no line of the file is close to it. Copy lines exactly as the "
        "file shows them",
    )
    assert refused(ws, replace(f, "x = 1\n", "x = 3\n"), journal).startswith("not applied: t.py: the <old> line")
    result = apply_text(ws, replace(f, "y = 2\nx = 1\n", "y = 2\nx = 3\n"), journal)
    assert result.status == "applied" and f.read_bytes() == b"x = 1\ny = 2\nx = 3\n"


def test_a_tolerant_match_applies_with_a_note_and_shifts_the_new_text(ws: Path, journal: Journal) -> None:
    f = write(ws / "c.py", b"class C:\n    def f(self):\n        return 1\n")
    result = apply_text(ws, replace(f, "def f(self):\n    return 1\n", "def f(self):\n    return 2\n"), journal)
    assert result.status == "applied", result.message()
    assert f.read_bytes() == b"class C:\n    def f(self):\n        return 2\n"
    assert result.plan.notes == (
        "replace 2 copied lines in c.py ('def f(self):' …): found at lines 2-3 (indentation shifted by '    ')",)


def test_a_tolerant_match_that_is_ambiguous_is_refused(ws: Path, journal: Journal) -> None:
    f = write(ws / "c.py", b"a = 1 \nb\na = 1\t\n")
    assert refused(ws, replace(f, "a = 1\n", "a = 2\n"), journal) == (
        "not applied: c.py: the <old> line 'a = 1' occurs 2 times (trailing whitespace ignored) (lines 1, 3); copy "
        "the line before or after it too, so that the copied lines occur once")


@pytest.mark.parametrize(("old", "copied", "new", "expected"), [
    (b"one\r\ntwo\r\nthree", "two\nthree\n", "2\n3\n", b"one\r\n2\r\n3"),  # CRLF, no final newline
    (b"\xef\xbb\xbfone\ntwo\n", "one\n", "ONE\n", b"\xef\xbb\xbfONE\ntwo\n"),  # BOM, first line
    (b"if x:\n\ty()\n\tz()\n", "\ty()\n", "\ty2()\n\ty3()\n", b"if x:\n\ty2()\n\ty3()\n\tz()\n"),  # tabs
    (b"a\r\nb\nc\r\n", "b\n", "B\nB2\n", b"a\r\nB\r\nB2\nc\r\n"),  # mixed: dominant ending, last keeps its own
    (b"caf\xe9\nx = 1\n", "x = 1\n", "x = 2\n", b"caf\xe9\nx = 2\n"),  # latin-1 bytes elsewhere stay
    (b"caf\xe9\nx = 1\n", "caf\xe9\n", "cafe\n", b"cafe\nx = 1\n"),  # a copied latin-1 line is found decoded
], ids=["crlf-no-final-newline", "bom", "tabs", "mixed-endings", "latin1-elsewhere", "latin1-copied"])
def test_copied_lines_keep_the_files_own_bytes(ws: Path, journal: Journal, old: bytes, copied: str, new: str,
                                               expected: bytes) -> None:
    f = write(ws / "f.txt", old)
    result = apply_batch([SearchReplaceEdit("f.txt", v(f), copied, new)], ws, journal=journal, confirm=accept_all)
    assert result.status == "applied", result.message()
    assert f.read_bytes() == expected
    assert journal.undo_last().ok and f.read_bytes() == old


def test_an_answer_written_with_crlf_finds_lines_of_an_lf_file(ws: Path, journal: Journal) -> None:
    f = write(ws / "f.txt", b"one\ntwo\n")
    result = apply_text(ws, replace(f, "two\n", "2\n").replace("\n", "\r\n"), journal)
    assert result.status == "applied" and f.read_bytes() == b"one\n2\n"


def test_an_insert_at_the_end_of_a_file_without_a_final_newline_keeps_it_without(ws: Path, journal: Journal) -> None:
    f = write(ws / "f.txt", b"a\r\nb")
    result = apply_batch([AnchoredInsertEdit("f.txt", v(f), "end", "", "c\n")], ws, journal=journal,
                         confirm=accept_all)
    assert result.status == "applied" and f.read_bytes() == b"a\r\nb\r\nc"


def test_an_anchor_that_resolved_at_preview_is_stale_when_the_file_changes_before_apply(
        ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    edit = SearchReplaceEdit("geo.py", v(f), "    return 3.14 * r * r\n", "    return math.pi * r * r\n")
    saved = b"# a line the editor added\n" + GEO

    def editor_saves_then_yes(plan: Plan):
        assert plan.ok and plan.changes[0].summary == "replaces 1 line"  # resolved at preview
        f.write_bytes(saved)
        return plan.proposals

    result = apply_batch([edit], ws, journal=journal, confirm=editor_saves_then_yes)
    assert result.status == "refused" and "changed on disk while you were deciding" in result.message()
    assert f.read_bytes() == saved and journal.entries() == []


def test_a_subset_approved_after_the_file_changed_is_stale_even_though_the_anchor_still_matches(
        ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    ver = v(f)
    edits = [SearchReplaceEdit("geo.py", ver, "import os\n", "import sys\n"),
             SearchReplaceEdit("geo.py", ver, "    return 2 * 3.14 * r\n", "    return 0\n")]
    saved = GEO + b"# saved\n"

    def change_then_approve_one(plan: Plan):
        f.write_bytes(saved)
        return plan.proposals[:1]

    result = apply_batch(edits, ws, journal=journal, confirm=change_then_approve_one)
    assert result.status == "refused" and "changed since the model saw it" in result.message()
    assert f.read_bytes() == saved and journal.entries() == []


def test_a_file_changed_before_planning_is_refused_even_when_the_copied_lines_are_still_there(
        ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    seen = v(f)
    f.write_bytes(b"import math\n" + GEO)  # the copied line moved one down: a numbered edit would now be wrong
    message = refused(ws, replace(f, "import os\n", "import sys\n", version=seen), journal)
    assert f"it saw version '{seen}'" in message and "nothing was applied" in message


def test_the_default_confirmation_applies_nothing(ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    result = apply_batch(parse_proposals(replace(f, "import os\n", "import sys\n")).proposals, ws, journal=journal)
    assert result.status == "declined" and f.read_bytes() == GEO
    assert apply_batch([], ws, journal=journal, confirm=refuse_all).status == "nothing"


def test_overlapping_copies_are_refused_naming_both_with_their_lines(ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    message = refused(ws, replace(f, "def area(r):\n    return 3.14 * r * r\n", "x\n")
                      + replace(f, "    return 3.14 * r * r\n\ndef perimeter(r):\n", "y\n"), journal)
    assert message == ("not applied: geo.py: replace 2 copied lines in geo.py ('def area(r):' …) (lines 3-4) and "
                       "replace 3 copied lines in geo.py ('return 3.14 * r * r' …) (lines 4-6) overlap; merge them "
                       "into one edit")


def test_the_instructions_example_values_are_named_when_a_model_copies_them(ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    assert refused(ws, replace(f, "import os\n", "import sys\n", version="VERSION"), journal) == (
        f"not applied: geo.py: version='VERSION' is not its version; copy version=\"{v(f)}\" from its header")
    example = '<replace path="example/EXAMPLE.txt" version="VERSION">\n<old>\nx\n</old>\n<new>\ny\n</new>\n</replace>'
    assert refused(ws, example, journal) == (
        "not applied: example/EXAMPLE.txt: is the instructions' example path; use the path of a file you were shown")
    assert refused(ws, '<create path="example/NEW.txt">\nx\n</create>', journal) == (
        "not applied: example/NEW.txt: is the instructions' example path; name the new file")


def test_mixing_numbered_and_copied_edits_of_one_file_works(ws: Path, journal: Journal) -> None:
    f = write(ws / "geo.py", GEO)
    ver = v(f)
    result = apply_text(ws, f'<edit path="geo.py" version="{ver}" line="1">\nimport sys\n</edit>\n'
                        + replace(f, "    return 2 * 3.14 * r\n", "    return 0\n"), journal)
    assert result.status == "applied"
    assert f.read_bytes() == GEO.replace(b"import os", b"import sys").replace(b"2 * 3.14 * r", b"0")
