"""The task generator as a library (what `ulm data edits` calls): every tier on a small module, the exact
expected bytes and their alternatives, the safety rules that keep a candidate out, determinism, layout
variants, and training transcripts.

Run: .venv/bin/python -m pytest tests/cb/editbench/test_generate.py -q
"""

from __future__ import annotations

import re

import pytest

from cb.editbench import generate as g
from cb.editbench import wiring
from cb.editbench.score import Sandbox, check, score_answer
from cb.editbench.tasks import SourceFile, SourceUnit, Task

MODULE = '''"""Retry helpers."""

import time

TIMEOUT = 30
NAME = "client"


def backoff(attempt):
    """How long to wait before an attempt.

    Doubles each time.
    """
    return min(2 ** attempt, TIMEOUT)


def retry(call, attempts=3):
    # try a few times
    for attempt in range(attempts):
        if attempt > 0:
            time.sleep(backoff(attempt))
        try:
            return call()
        except OSError:
            pass
    raise RuntimeError("gave up")


def unused_helper(x):
    return x + 1
'''


def unit(text: str = MODULE, name: str = "test/retry", path: str = "retry.py") -> SourceUnit:
    return SourceUnit(name, (SourceFile(path, text.encode()),))


def only(tier: str, per_tier: int = 1, seed: int = 0, u: SourceUnit | None = None) -> list[Task]:
    return g.generate([u or unit()], seed=seed, tiers=(tier,), per_tier=per_tier)


def assert_solves(task: Task) -> None:
    """The reference answer passes through the real parse → plan → apply and the check; the untouched
    files fail the check."""
    with Sandbox(task) as box:
        assert check(task, box.workspace) != ""
    with Sandbox(task) as box:
        outcome = score_answer(task, wiring.reference_answer(task), box)
        assert outcome.correct, (task.id, outcome.reason, outcome.errors)


@pytest.mark.parametrize("tier", [t for t in g.GENERATED_TIERS if t != "two-file"])
def test_every_single_file_tier_makes_a_solvable_task_from_a_module(tier: str) -> None:
    tasks = only(tier, per_tier=50)
    assert tasks, tier
    for task in tasks:
        assert task.tier == tier and task.unit == "test/retry" and task.open == ("retry.py",)
        assert task.id.startswith(f"{tier}:test/retry:")
        assert "retry.py" in task.request
        assert_solves(task)


def test_literal_tasks_change_exactly_the_literal_and_accept_either_quote() -> None:
    tasks = {t.request: t for t in only("literal", per_tier=50)}
    timeout = next(t for r, t in tasks.items() if "TIMEOUT" in r)
    new = timeout.solution["retry.py"].decode()
    changed = [(a, b) for a, b in zip(MODULE.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0] == "TIMEOUT = 30"
    assert changed[0][1].removeprefix("TIMEOUT = ") in timeout.request
    name = next(t for r, t in tasks.items() if "NAME" in r)
    quoted = [alt["retry.py"].decode().splitlines()[5] for alt in name.check.expect]
    assert len(quoted) == 2 and quoted[0].count('"') == 2 and quoted[1].count("'") == 2


def test_rename_renames_every_use_and_offers_the_comment_and_string_variants() -> None:
    source = MODULE.replace("    # try a few times", "    # try a few times with backoff")
    tasks = only("rename", per_tier=50, u=unit(source))
    by_old = {next(w for w in ("backoff", "TIMEOUT", "retry") if f" {w} " in t.request): t for t in tasks}
    task = by_old["backoff"]
    new_name = task.request.split(" to ")[1].split()[0].rstrip(".")
    code_only, with_comment = (alt["retry.py"].decode() for alt in task.check.expect)
    old_word = re.compile(r"\bbackoff\b")
    assert code_only.count(new_name) == 2 and old_word.search(code_only)  # the def and the call; the comment kept
    assert with_comment.count(new_name) == 3 and not old_word.search(with_comment)


def test_rename_skips_a_name_that_is_also_a_parameter_or_an_attribute() -> None:
    source = MODULE + "\n\ndef wrap(retry):\n    return retry\n\n\ndef uses(obj):\n    return obj.backoff\n"
    olds = {t.request for t in only("rename", per_tier=50, u=unit(source))}
    assert not any(" retry " in r or " backoff " in r for r in olds)


def test_import_accepts_any_place_in_the_import_block_and_not_inside_the_code() -> None:
    task = next(t for t in only("import", per_tier=50) if "json" in t.request)
    texts = [alt["retry.py"].decode() for alt in task.check.expect]
    positions = {text.splitlines().index("import json") for text in texts}
    assert {1, 2, 3} <= positions  # after the docstring, before and after `import time`
    assert all(t.count("import json") == 1 and t.index("import json") < t.index("TIMEOUT = 30") for t in texts)


def test_delete_removes_an_unused_function_or_import_and_never_a_used_one() -> None:
    requests = [t.request for t in only("delete", per_tier=50)]
    assert any("unused_helper" in r for r in requests)
    assert any(" retry " in r for r in requests)  # defined and never called in the module
    assert not any("backoff" in r or "time" in r for r in requests)
    source = MODULE.replace("import time\n", "import time\nimport os\n")
    assert any(" os " in t.request or "import os" in t.request for t in only("delete", per_tier=50, u=unit(source)))


def test_bugfix_flips_one_operator_and_the_solution_is_the_original() -> None:
    for task in only("bugfix", per_tier=50):
        broken, fixed = task.files["retry.py"].decode(), task.solution["retry.py"].decode()
        assert fixed == MODULE and broken != MODULE
        assert sum(a != b for a, b in zip(broken.splitlines(), fixed.splitlines(), strict=True)) == 1


def test_two_file_renames_a_symbol_in_its_file_and_where_it_is_imported() -> None:
    lib = "LIMIT = 3\n\n\ndef area(w, h):\n    return w * h\n"
    app = "from lib import area\n\n\ndef show(w):\n    return area(w, 2)\n"
    project = SourceUnit("test/two", (SourceFile("lib.py", lib.encode()), SourceFile("app.py", app.encode())))
    tasks = g.generate([project], tiers=("two-file", "rename"), per_tier=5)
    two = [t for t in tasks if t.tier == "two-file"]
    assert len(two) == 1 and set(two[0].open) == {"lib.py", "app.py"} and set(two[0].solution) == {"lib.py", "app.py"}
    assert all(" area " not in t.request for t in tasks if t.tier == "rename")  # used from app.py: not single-file
    assert_solves(two[0])


def test_generation_is_deterministic_for_a_seed_and_units_do_not_disturb_each_other() -> None:
    first = g.generate([unit()], seed=3)
    again = g.generate([unit(), unit(name="test/other")], seed=3)
    assert [(t.id, t.request, t.files, t.solution) for t in first] == \
        [(t.id, t.request, t.files, t.solution) for t in again if t.unit == "test/retry"]
    assert {t.request for t in g.generate([unit()], seed=4)} != {t.request for t in first}


def test_a_file_python_cannot_parse_gives_no_tasks() -> None:
    assert g.generate([unit("def broken(:\n")]) == []
    with pytest.raises(ValueError, match="no generator"):
        g.generate([unit()], tiers=("nope",))


def test_layout_variants_transform_before_expected_and_solution_alike() -> None:
    base = only("literal")[0]
    crlf = g.layout_variant(base, "crlf")
    assert crlf is not None and crlf.tier == "crlf" and crlf.base_tier == "literal" and crlf.unit == base.unit
    assert crlf.files["retry.py"] == base.files["retry.py"].replace(b"\n", b"\r\n")
    tabs = g.layout_variant(base, "tabs")
    assert tabs is not None and b"\n\treturn min(" in tabs.files["retry.py"] and b"    " not in tabs.files["retry.py"]
    no_eol = g.layout_variant(base, "no-eol")
    assert no_eol is not None and not no_eol.files["retry.py"].endswith(b"\n")
    assert g.layout_variant(crlf, "crlf") is None and g.layout_variant(no_eol, "no-eol") is None
    for variant in (crlf, tabs, no_eol):
        assert_solves(variant)


def test_a_transcript_is_cbs_prompt_then_the_reference_answer() -> None:
    task = only("literal")[0]
    messages = wiring.transcript(task)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert '<file path="retry.py" version="' in messages[0]["content"] and " 6| NAME = " in messages[0]["content"]
    assert messages[1]["content"] == task.request
    assert messages[2]["content"] == wiring.reference_answer(task)
