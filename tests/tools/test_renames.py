"""Rename blocks: which words are uses (Python code and f-string fields, whole words elsewhere), the messages
for a name that is missing or taken, and the rename through plan and apply on real files: made after the
batch's other edits, bytes kept (CRLF, no final newline), stale versions refused, undoable.

Run: .venv/bin/python -m pytest tests/tools/test_renames.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.support import apply_text, tree_state, v, write
from tools import Journal, RenameEdit, parse_proposals, plan_batch
from tools.renames import RenameError, check, names, renamed

SHOP = '''"""Shop totals: total() is the entry point."""
from prices import total as _t


def total(items):
    # total of the items
    return sum(items)


report = f"{total([1, 2]):>{width}} total {{total}} {cart.total}"
print(total([3]), "total")
'''.splitlines()


def test_in_python_code_names_are_renamed_and_comments_and_strings_are_not() -> None:
    out = renamed(SHOP, "shop.py", "total", "subtotal")
    assert out[0] == '"""Shop totals: total() is the entry point."""'  # a docstring keeps its words
    assert out[1] == "from prices import subtotal as _t"
    assert out[4:6] == ["def subtotal(items):", "    # total of the items"]
    assert out[9] == 'report = f"{subtotal([1, 2]):>{width}} total {{total}} {cart.subtotal}"'  # fields only
    assert out[10] == 'print(subtotal([3]), "total")'


def test_other_files_and_python_that_does_not_tokenize_rename_whole_words() -> None:
    assert renamed(["total = 1", "subtotals total_x xtotal (total)"], "notes.txt", "total", "sum") == \
        ["sum = 1", "subtotals total_x xtotal (sum)"]
    broken = ['s = """never closed', "total(1)"]
    assert renamed(broken, "a.py", "total", "t2") == ['s = """never closed', "t2(1)"]
    assert renamed(["#!/usr/bin/env python3", "x = 'x'"], "tool", "x", "y") == ["#!/usr/bin/env python3", "y = 'x'"]


def test_names_are_the_files_code_names_in_order_without_keywords() -> None:
    assert names(["def area(r):", "    return 3.14 * r * r  # area", "print(f'{area(2)}')"], "geo.py") == \
        ["area", "r", "print"]
    assert names(["hello world", "1st hello_2"], "a.md") == ["hello", "world", "hello_2"]


@pytest.mark.parametrize(("old", "new", "message"), [
    ("totl", "x", "totl does not occur in its code; its names like it: total"),
    ("items", "sum", "sum is already a name in it; renaming items to sum would make them one name"),
    ("total", "class", "to='class' is not a name (letters, digits and _, not starting with a digit)"),
    ("2x", "y", "from='2x' is not a name (letters, digits and _, not starting with a digit)"),
    ("total", "total", "renames total to itself"),
])
def test_a_rename_the_file_cannot_take_is_refused_with_a_message_the_model_can_act_on(old: str, new: str,
                                                                                        message: str) -> None:
    with pytest.raises(RenameError) as exc:
        check(SHOP, "shop.py", old, new)
    assert str(exc.value) == message


def test_a_rename_with_another_edit_of_a_line_it_touches_renames_the_new_lines_too(ws: Path,
                                                                                    journal: Journal) -> None:
    f = write(ws / "a.py", b"def total(items):\r\n    return sum(items)\r\n\r\nprint(total([1, 2]))")
    ver = v(f)
    result = apply_text(ws, f'''<rename path="a.py" version="{ver}" from="total" to="subtotal"/>
<replace path="a.py" version="{ver}">
<old>
def total(items):
    return sum(items)
</old>
<new>
def total(items):
    return sum(i for i in items if i)
</new>
</replace>''', journal)
    assert result.status == "applied", result.message()
    assert f.read_bytes() == (b"def subtotal(items):\r\n    return sum(i for i in items if i)\r\n\r\n"
                              b"print(subtotal([1, 2]))")
    assert result.plan.changes[0].summary == "replaces 3 lines"  # the def line once: the replace wrote it
    assert journal.undo_last().ok
    assert f.read_bytes() == b"def total(items):\r\n    return sum(items)\r\n\r\nprint(total([1, 2]))"


def test_a_rename_across_two_files_is_one_block_each_and_a_bad_one_refuses_the_batch(ws: Path,
                                                                                    journal: Journal) -> None:
    g = write(ws / "grades.py", b"def average(xs):\n    return sum(xs) / len(xs)\n")
    r = write(ws / "report.py", b"from grades import average\n\nprint(average([1]))\n")
    both = (f'<rename path="grades.py" version="{v(g)}" from="average" to="mean"/>\n'
            f'<rename path="report.py" version="{v(r)}" from="average" to="mean"/>\n')
    before = tree_state(ws)
    plan = plan_batch(parse_proposals(both + f'<rename path="report.py" version="{v(r)}" from="avg" to="m"/>')
                      .proposals, ws)
    assert plan.errors == ("rename avg to m in report.py: avg does not occur in its code; its names like it: average",)
    assert tree_state(ws) == before
    result = apply_text(ws, both, journal)
    assert result.status == "applied", result.message()
    assert g.read_bytes() == b"def mean(xs):\n    return sum(xs) / len(xs)\n"
    assert r.read_bytes() == b"from grades import mean\n\nprint(mean([1]))\n"


def test_a_rename_of_a_file_changed_since_the_model_saw_it_is_refused(ws: Path, journal: Journal) -> None:
    f = write(ws / "a.py", b"x = 1\n")
    seen = v(f)
    f.write_bytes(b"x = 2\n")
    plan = plan_batch([RenameEdit("a.py", seen, "x", "y")], ws)
    assert len(plan.errors) == 1 and "changed since the model saw it" in plan.errors[0]
    assert f.read_bytes() == b"x = 2\n"
