"""The benchmark's corpus: its size and tiers, the split rule (stable, by source unit), that every task is
solvable through the real parse → plan → apply and that its check tells the untouched files apart, the
fixtures' provenance, hand-written task errors, selection, and the held-out guard for training data.

Run: .venv/bin/python -m pytest tests/cb/editbench/test_corpus.py -q
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest

from cb.editbench import corpus, wiring
from cb.editbench.score import Sandbox, check, score_answer
from cb.editbench.tasks import SPLITS, TIERS, SourceFile, SourceUnit, overlaps_heldout, split_of


def test_the_corpus_has_at_least_80_tasks_in_every_tier_on_both_sides_of_the_split() -> None:
    tasks = corpus.load()
    assert len(tasks) >= 80
    assert len({t.id for t in tasks}) == len(tasks)
    counts = corpus.counts(tasks)
    assert list(counts) == list(TIERS)
    for tier, by_split in counts.items():
        assert all(by_split[s] >= 1 for s in SPLITS), (tier, by_split)
    heldout = sum(c["heldout"] for c in counts.values())
    assert 0.4 <= heldout / len(tasks) <= 0.6
    assert {t.origin for t in tasks} == {"generated", "hand-written"}


def test_the_split_is_a_stable_hash_of_the_source_unit() -> None:
    # pinned: a change of the rule would move held-out tasks into the tuning side
    assert split_of("stdlib/colorsys") == "dev" and split_of("stdlib/datetime") == "heldout"
    assert split_of("project/shop") == "dev" and split_of("project/bank") == "heldout"
    tasks = {t.id: t for t in corpus.load()}
    for task in tasks.values():
        assert task.split == split_of(task.unit)
        assert task.unit.startswith(("stdlib/", "project/"))
        if task.base_tier:  # a layout variant: same unit (so same split) as the task it was made from
            base = tasks[task.id.split(":", 1)[1]]
            assert (base.unit, base.tier) == (task.unit, task.base_tier)


def test_the_corpus_is_the_same_every_time_it_is_built() -> None:
    first = corpus.fingerprint(corpus.load())
    corpus.load.cache_clear()
    corpus.units.cache_clear()
    assert corpus.fingerprint(corpus.load()) == first


@pytest.mark.slow
def test_every_task_is_solved_by_its_reference_answer_and_not_by_the_untouched_files() -> None:
    for task in corpus.load():
        with Sandbox(task) as box:
            assert check(task, box.workspace) != "", f"{task.id}: the untouched files pass the check"
        with Sandbox(task) as box:
            outcome = score_answer(task, wiring.reference_answer(task), box)
            assert outcome.correct, (task.id, outcome.status, outcome.reason, outcome.errors)


def test_reference_answers_are_format_v2_whose_copied_lines_occur_once() -> None:
    from tools import AnchoredInsertEdit, CreateFile, SearchReplaceEdit, parse_proposals
    from tools.anchors import find_run
    from tools.proposals import content_lines
    from tools.textfile import TextFile

    forms: set[str] = set()
    for task in corpus.load():
        for p in parse_proposals(wiring.reference_answer(task)).proposals:
            assert isinstance(p, SearchReplaceEdit | AnchoredInsertEdit | CreateFile), (task.id, p)
            copied = p.old if isinstance(p, SearchReplaceEdit) else getattr(p, "anchor", "")
            forms.add(type(p).__name__ + (f" {p.where}" if isinstance(p, AnchoredInsertEdit) else ""))
            if copied:
                run = find_run(TextFile.parse(task.files[p.path]).text_lines(), content_lines(copied), "copy")
                assert run.how == "", (task.id, run.how)  # found exactly, once, with no tolerance
    assert {"SearchReplaceEdit", "AnchoredInsertEdit after"} <= forms


def test_a_change_next_to_lines_that_repeat_copies_enough_to_be_unique() -> None:
    before = {"a.py": b"x = 1\nx = 1\nx = 1\ny = 2\n"}
    for after in (b"x = 1\nz = 0\nx = 1\nx = 1\ny = 2\n", b"x = 1\nx = 2\nx = 1\ny = 2\n", b"x = 1\ny = 2\n"):
        answer = wiring.answer_for(before, {"a.py": after})
        assert "line=" not in answer and "start=" not in answer and "after=" not in answer
        with Sandbox(corpus.load()[0]) as box:
            (box.workspace / "a.py").write_bytes(before["a.py"])
            applied = wiring.apply(wiring.parse(answer).proposals, box.workspace, box.journal)
            assert applied.status == "applied", (after, applied.errors)
            assert (box.workspace / "a.py").read_bytes() == after


def test_the_stdlib_fixtures_match_their_manifest() -> None:
    data = resources.files("cb.editbench").joinpath("data/stdlib")
    manifest = json.loads(data.joinpath("MANIFEST.json").read_text("utf-8"))
    assert manifest["python"].count(".") == 2 and len(manifest["units"]) >= 16
    for module, meta in manifest["units"].items():
        text = data.joinpath(f"{module}.py.txt").read_bytes()
        assert hashlib.sha256(text).hexdigest() == meta["sha256"]
        assert text.count(b"\n") == meta["lines"] and len(meta["module_sha256"]) == 64 and meta["ranges"]
        compile(text, module, "exec", dont_inherit=True)


def test_a_hand_written_patch_must_match_exactly_once() -> None:
    unit = SourceUnit("project/x", (SourceFile("a.py", b"x = 1\nx = 1\n"),))
    entry = {"name": "t", "tier": "literal", "open": ["a.py"], "request": "r", "exact": True,
             "solution": [{"path": "a.py", "old": "x = 1", "new": "x = 2"}]}
    with pytest.raises(corpus.CorpusError, match="occurs 2 times"):
        corpus._hand_task(unit, entry)
    with pytest.raises(corpus.CorpusError, match="tier must be"):
        corpus._hand_task(unit, {**entry, "tier": "nope"})
    with pytest.raises(corpus.CorpusError, match="needs a script"):
        corpus._hand_task(unit, {**entry, "exact": False, "solution": [{"path": "a.py", "old": "x = 1\nx",
                                                                         "new": "y"}]})


def test_select_takes_the_tiers_in_turn_and_checks_its_arguments() -> None:
    tasks = corpus.load()
    picked = corpus.select(tasks, "dev", (), 11)
    assert [t.tier for t in picked] == list(TIERS)
    assert all(t.split == "dev" for t in picked)
    assert {t.tier for t in corpus.select(tasks, "all", ("rename", "crlf"))} == {"rename", "crlf"}
    assert len(corpus.select(tasks, "all")) == len(tasks)
    with pytest.raises(ValueError, match="unknown tier 'nope'"):
        corpus.select(tasks, "dev", ("nope",))
    with pytest.raises(ValueError, match="unknown split"):
        corpus.select(tasks, "test")


def test_training_data_makers_can_tell_held_out_code_apart() -> None:
    units = corpus.units()
    heldout = next(u for u in units if split_of(u.name) == "heldout" and u.name.startswith("stdlib/"))
    dev = next(u for u in units if split_of(u.name) == "dev" and u.name.startswith("stdlib/"))
    wrapped = "# some other code around it\n" + heldout.files[0].data.decode() + "\nx = 1\n"
    assert overlaps_heldout(wrapped, units)
    assert not overlaps_heldout(dev.files[0].data.decode(), units)
    assert not overlaps_heldout("def f():\n    return 1\n", units)
