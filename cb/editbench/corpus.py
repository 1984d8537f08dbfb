"""The benchmark's corpus: its fixtures, the generator's tasks on them, the hand-written tasks; selection.

Package data (cb/editbench/data/):

    stdlib/<module>.py.txt          excerpts of the Python standard library, copied into the repo so results
                                    do not depend on the installed Python (MANIFEST.json: the module, the
                                    Python version and module hash they were taken from, the line ranges)
    projects/<name>/<file>.py.txt   small hand-written projects of two files
    projects/<name>/tasks.toml      their hand-written tasks
    functions.toml                  the functions the `function` tier asks for

`load()` builds the corpus, the same every time: for each edit tier, the generator's task (seed 0) from the
first PER_TIER units in the order of a hash of (tier, unit) that yield one; every hand-written task; then
for each layout tier, LAYOUT_COUNT variants of other tasks, taken in the order of a hash of (layout, task
id), one tier after another. Units are "stdlib/<module>" and "project/<name>"; the split follows them.

A hand-written task in tasks.toml:

    [[task]]
    name = "discount"                       tier = "two-file"
    open = ["prices.py", "cart.py"]         request = "Add an optional discount argument to ..."
    script = '''...'''                      a test run in the edited copy (the copy is on sys.path)
    keep = ["cart.py"]                      files whose original lines must all still be there
    exact = true                            the solution's bytes are the check (instead of, or with, a script)
    [[task.setup]]                          patches giving the files the task starts from (a planted bug)
    [[task.solution]]                       patches giving the reference solution from those files

A patch is {path, old, new}; `old` must occur exactly once in the file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from cb.editbench.generate import GENERATED_TIERS, generate, layout_variant
from cb.editbench.tasks import EDIT_TIERS, LAYOUT_TIERS, SPLITS, TIERS, Check, SourceFile, SourceUnit, Task

PER_TIER = 12
LAYOUT_COUNT = 8
SEED = 0
FIXTURE_SUFFIX = ".txt"  # fixtures are stored as x.py.txt so linters and test collectors leave them alone


class CorpusError(ValueError):
    """A broken fixture or hand-written task; the message names it."""


def _data() -> Traversable:
    return resources.files("cb.editbench").joinpath("data")


def _unit_from(name: str, folder: Traversable) -> SourceUnit:
    files = sorted((f.name.removesuffix(FIXTURE_SUFFIX), f.read_bytes()) for f in folder.iterdir()
                   if f.name.endswith(".py" + FIXTURE_SUFFIX))
    return SourceUnit(name, tuple(SourceFile(path, data) for path, data in files))


@cache
def units() -> tuple[SourceUnit, ...]:
    """Every source unit of the corpus: the stdlib excerpts, then the projects."""
    stdlib = _data().joinpath("stdlib")
    manifest = json.loads(stdlib.joinpath("MANIFEST.json").read_text("utf-8"))
    out = []
    for module, meta in manifest["units"].items():
        data = stdlib.joinpath(f"{module}.py{FIXTURE_SUFFIX}").read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise CorpusError(f"stdlib/{module}: the fixture does not match its MANIFEST.json hash")
        out.append(SourceUnit(f"stdlib/{module}", (SourceFile(f"{module}.py", data),),
                              {"python": manifest["python"], "ranges": meta["ranges"]}))
    projects = _data().joinpath("projects")
    for folder in sorted(projects.iterdir(), key=lambda f: f.name):
        if folder.is_dir():
            out.append(_unit_from(f"project/{folder.name}", folder))
    return tuple(out)


def _patch(text: str, patch: Mapping[str, str], where: str) -> str:
    old, new = patch["old"], patch["new"]
    count = text.count(old)
    if count != 1:
        raise CorpusError(f"{where}: the patch's old text occurs {count} times in {patch['path']} (must be once)")
    return text.replace(old, new)


def _patched(files: Mapping[str, bytes], patches: Iterable[Mapping[str, str]], where: str) -> dict[str, bytes]:
    texts = {p: b.decode("utf-8") for p, b in files.items()}
    changed: dict[str, str] = {}
    for patch in patches:
        path = patch["path"]
        if path not in texts:
            raise CorpusError(f"{where}: a patch names {path}, which the project does not have")
        texts[path] = changed[path] = _patch(texts[path], patch, where)
    return {p: t.encode("utf-8") for p, t in changed.items()}


def _hand_task(unit: SourceUnit, entry: Mapping[str, Any]) -> Task:
    where = f"{unit.name} task {entry.get('name', '?')!r}"
    if entry.get("tier") not in EDIT_TIERS:
        raise CorpusError(f"{where}: tier must be one of {', '.join(EDIT_TIERS)}")
    files = {f.path: f.data for f in unit.files}
    files.update(_patched(files, entry.get("setup", []), where))
    solution = _patched(files, entry.get("solution", []), where)
    if not solution:
        raise CorpusError(f"{where}: no solution patches")
    script = entry.get("script", "")
    if not script and not entry.get("exact"):
        raise CorpusError(f"{where}: needs a script or exact = true")
    check = Check((solution,) if entry.get("exact") else (), script, tuple(entry.get("keep", ())))
    opened = tuple(entry["open"])
    if any(p not in files for p in opened):
        raise CorpusError(f"{where}: open names a file the project does not have")
    return Task(f"{entry['tier']}:{unit.name}:{entry['name']}", entry["tier"], unit.name, files, opened,
                entry["request"], check, solution, origin="hand-written")


def hand_written(units_: Iterable[SourceUnit]) -> list[Task]:
    """The tasks of every project's tasks.toml."""
    out = []
    for unit in units_:
        if not unit.name.startswith("project/"):
            continue
        toml = _data().joinpath("projects", unit.name.removeprefix("project/"), "tasks.toml")
        if toml.is_file():
            out += [_hand_task(unit, entry) for entry in tomllib.loads(toml.read_text("utf-8")).get("task", [])]
    return out


def _rank(*parts: str) -> bytes:
    return hashlib.blake2b(":".join(parts).encode("utf-8")).digest()


def _generated(units_: Sequence[SourceUnit]) -> list[Task]:
    out = []
    for tier in GENERATED_TIERS:
        taken = 0
        for unit in sorted(units_, key=lambda u: _rank(tier, u.name)):
            if taken == PER_TIER:
                break
            made = generate([unit], seed=SEED, tiers=(tier,))
            out += made
            taken += bool(made)
    return out


def _variants(base: Sequence[Task]) -> list[Task]:
    out = []
    for layout in LAYOUT_TIERS:
        ranked = sorted(base, key=lambda t: _rank(layout, t.id))
        by_tier = {tier: [t for t in ranked if t.tier == tier] for tier in EDIT_TIERS}
        made: list[Task] = []
        for group in itertools.zip_longest(*by_tier.values()):
            for task in group:
                if task is not None and len(made) < LAYOUT_COUNT and (v := layout_variant(task, layout)):
                    made.append(v)
        out += made
    return out


@cache
def load() -> tuple[Task, ...]:
    """The whole corpus (see the module docstring)."""
    units_ = units()
    base = _generated(units_) + hand_written(units_)
    tasks = [*base, *_variants(base)]
    order = {tier: i for i, tier in enumerate(TIERS)}
    return tuple(sorted(tasks, key=lambda t: order[t.tier]))


def select(tasks: Sequence[Task], split: str = "dev", tiers: Sequence[str] = (), limit: int = 0) -> list[Task]:
    """The tasks of `split` ("heldout", "dev" or "all") and `tiers` (all when empty), interleaved one tier
    after another (so `limit` takes a bit of every tier), at most `limit` (0 = all)."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; use heldout, dev or all")
    unknown = [t for t in tiers if t not in TIERS]
    if unknown:
        raise ValueError(f"unknown tier {unknown[0]!r}; the tiers are: {', '.join(TIERS)}")
    chosen = [t for t in tasks if (split == "all" or t.split == split) and (not tiers or t.tier in tiers)]
    groups = [[t for t in chosen if t.tier == tier] for tier in TIERS]
    mixed = [t for row in itertools.zip_longest(*groups) for t in row if t is not None]
    return mixed[:limit] if limit > 0 else mixed


def fingerprint(tasks: Iterable[Task]) -> str:
    """A short hash of tasks' ids, files, requests and checks: equal fingerprints, same tasks."""
    h = hashlib.blake2b(digest_size=8)
    for t in tasks:
        h.update(t.id.encode() + b"\0" + t.request.encode() + b"\0" + t.check.script.encode() + b"\0")
        for mapping in (t.files, *t.check.expect):
            for path in sorted(mapping):
                h.update(path.encode() + b"\0" + mapping[path] + b"\0")
    return h.hexdigest()


def counts(tasks: Iterable[Task]) -> dict[str, dict[str, int]]:
    """{tier: {"heldout": n, "dev": n}} for the tiers present, in report order."""
    table: dict[str, dict[str, int]] = {}
    for t in tasks:
        row = table.setdefault(t.tier, dict.fromkeys(SPLITS, 0))
        row[t.split] += 1
    return {tier: table[tier] for tier in TIERS if tier in table}
