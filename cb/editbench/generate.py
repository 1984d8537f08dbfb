"""The task generator: edit tasks made from real Python source, deterministic for a seed.

    units = [SourceUnit("stdlib/colorsys", (SourceFile("colorsys.py", data),))]
    tasks = generate(units)                                  # every tier, one task per unit and tier
    tasks = generate(units, seed=7, tiers=("rename",), per_tier=3)
    variant = layout_variant(tasks[0], "crlf")               # the same task on CRLF files (or None)

The benchmark's corpus (cb.editbench.corpus) runs it on its fixtures; `ulm data edits` runs it on other code
(a git repo, the standard library less the held-out units: see tasks.overlaps_heldout) to make training
transcripts. Each tier finds its candidates with `ast` and `tokenize` (cb.editbench.pysource), picks
`per_tier` of them with an RNG seeded by (seed, unit, tier), so a unit's tasks do not move when other units
are added, and builds the request from a few phrasings, the exact expected bytes with the alternatives a
user would also accept (where an import goes, whether a rename also fixes the comments), and a reference
solution.

Tiers (a file Python cannot parse gives no tasks):
    literal   change a number or short string: an assignment `NAME = 30`, or one that occurs once in a function
    rename    a module-level function, class or constant, every use in its file (comments and strings optional)
    import    add an import (anywhere in the leading import block)
    function  add a small function from data/functions.toml; checked by running tests on the edited module
    delete    an unused import, or a small module-level function nothing uses
    rewrite   shorten a docstring to its first line, or stub a function body out (raise NotImplementedError)
    bugfix    one operator was flipped (`<` for `<=`, `+` for `-`, `and` for `or`): put it back
    two-file  rename a symbol defined in one file of the unit and imported by another
Layout variants: crlf (every line end CRLF), tabs (indentation by tabs), no-eol (no final newline).
"""

from __future__ import annotations

import ast
import itertools
import random
import tokenize
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

from cb.editbench.pysource import (
    FunctionNode,
    PySource,
    Span,
    docstring_node,
    is_identifier,
    replace_spans,
    splice_lines,
)
from cb.editbench.tasks import EDIT_TIERS, LAYOUT_TIERS, Check, SourceUnit, Task

GENERATED_TIERS = EDIT_TIERS


@dataclass
class Draft:
    """A task before it has an id: texts, not bytes."""

    request: str
    open: tuple[str, ...]
    solution: dict[str, str]  # changed files' new text (the first expected alternative when there are any)
    alternatives: list[dict[str, str]] = field(default_factory=list)
    script: str = ""
    keep: tuple[str, ...] = ()
    files: dict[str, str] | None = None  # the workspace's texts when they differ from the unit's (bugfix)


Maker = Callable[[SourceUnit, dict[str, PySource], random.Random], list[Callable[[], Draft | None]]]


def generate(units: Iterable[SourceUnit], *, seed: int = 0, tiers: Sequence[str] = GENERATED_TIERS,
             per_tier: int = 1) -> list[Task]:
    """Up to `per_tier` tasks of each tier from each unit, in unit then tier order."""
    unknown = [t for t in tiers if t not in MAKERS]
    if unknown:
        raise ValueError(f"no generator for tier(s) {', '.join(unknown)}; known: {', '.join(MAKERS)}")
    tasks: list[Task] = []
    for unit in units:
        sources = parsed_files(unit)
        for tier in tiers:
            rng = random.Random(f"{seed}:{unit.name}:{tier}")
            candidates = MAKERS[tier](unit, sources, rng)
            rng.shuffle(candidates)
            made = 0
            for build in candidates:
                if made == per_tier:
                    break
                draft = build()
                if draft is not None:
                    made += 1
                    tasks.append(to_task(draft, unit, tier, f"{tier}:{unit.name}:{made}"))
    return tasks


def parsed_files(unit: SourceUnit) -> dict[str, PySource]:
    """The unit's Python files that decode as UTF-8 and parse."""
    out: dict[str, PySource] = {}
    for f in unit.files:
        if not f.path.endswith(".py"):
            continue
        try:
            out[f.path] = PySource(f.path, f.data.decode("utf-8"))
        except (UnicodeDecodeError, SyntaxError, ValueError, tokenize.TokenError):
            continue
    return out


def to_task(draft: Draft, unit: SourceUnit, tier: str, task_id: str) -> Task:
    texts = {f.path: f.data for f in unit.files}
    if draft.files is not None:
        texts.update({p: t.encode("utf-8") for p, t in draft.files.items()})
    check = Check(tuple({p: t.encode("utf-8") for p, t in alt.items()} for alt in draft.alternatives),
                  draft.script, draft.keep)
    return Task(task_id, tier, unit.name, texts, draft.open, draft.request, check,
                {p: t.encode("utf-8") for p, t in draft.solution.items()})


def _say(rng: random.Random, phrasings: Sequence[str], **values: str) -> str:
    return rng.choice(phrasings).format(**values)


def _unique(alternatives: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []
    for alt in alternatives:
        if alt not in seen:
            seen.append(alt)
    return seen


# --- literal -------------------------------------------------------------------------------------------

LITERAL_ASSIGNED = ("In {path}, change {name} from {old} to {new}.", "Set {name} to {new} in {path}.",
                    "{path}: {name} should be {new}, not {old}.", "Change the value of {name} in {path} to {new}.")
LITERAL_IN_FUNCTION = ("In {path}, change the {old} in {func}() to {new}.",
                       "In the function {func} in {path}, replace the literal {old} with {new}.",
                       "{func} in {path} uses {old}; make it {new}.")
STRING_VALUES = ("default", "none", "auto", "utf-8", "N/A", "-", "?", "x")


def _literal_text(src: PySource, node: ast.expr) -> tuple[Any, str] | None:
    """(value, source text) of a plain literal: an int or float (maybe negated), or a short one-line string."""
    inner, sign = node, 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner, sign = node.operand, -1
    if not isinstance(inner, ast.Constant) or node.lineno != node.end_lineno:
        return None
    value, text = inner.value, src.segment(node)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if any(c in text.lower() for c in "_ej"):
            return None
        return sign * value, text
    if isinstance(value, str) and sign == 1 and text[:1] in "'\"" and text[:3] not in ('"""', "'''") \
            and len(value) <= 30 and value.isprintable() and not any(c in text[1:-1] for c in "\\'\""):
        return value, text
    return None


def _new_literal(value: Any, text: str, rng: random.Random) -> list[str]:
    """The new literal's source text, first the one to ask for, then equivalent spellings to accept."""
    if isinstance(value, str):
        new = rng.choice([s for s in STRING_VALUES if s != value])
        quote = text[0]
        other = '"' if quote == "'" else "'"
        return [f"{quote}{new}{quote}", f"{other}{new}{other}"]
    if isinstance(value, float):
        new_value = rng.choice([value * 2, value + 0.5, value / 2])
        return [repr(round(new_value, 6))] if round(new_value, 6) != value else [repr(value + 1.0)]
    body = text.lstrip("-")
    choices = [v for v in (value + 1, value * 2, value + 10, value * 10) if v != value and v >= 0] or [1]
    new_int = rng.choice(choices)
    prefix = body[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        digits = body[2:]
        spec = {"0x": "x", "0o": "o", "0b": "b"}[prefix]
        formatted = format(new_int, f"0{len(digits)}{spec}")
        return [body[:2] + (formatted.upper() if digits.isupper() else formatted)]
    return [str(new_int)]


def _store_names(src: PySource) -> dict[str, int]:
    """How often each name (`x`, or `self.x`) is assigned anywhere in the file."""
    counts: dict[str, int] = {}
    for node in ast.walk(src.tree):
        name = _target_name(node)
        if name and isinstance(getattr(node, "ctx", None), ast.Store):
            counts[name] = counts.get(name, 0) + 1
    return counts


def _target_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def _literal_candidates(unit: SourceUnit, sources: dict[str, PySource],
                        rng: random.Random) -> list[Callable[[], Draft | None]]:
    out: list[Callable[[], Draft | None]] = []
    for src in sources.values():
        stores = _store_names(src)
        seen: set[int] = set()
        for node in ast.walk(src.tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                name = _target_name(node.targets[0])
                literal = _literal_text(src, node.value)
                if name and literal and stores.get(name) == 1:
                    seen.add(id(node.value))
                    out.append(_bind(_literal_draft, src, node.value, literal, rng, name=name))
        negated = {id(n.operand) for n in ast.walk(src.tree) if isinstance(n, ast.UnaryOp)}
        for qualname, fn in src.functions():
            found = [(n, lit) for n in ast.walk(fn) if id(n) not in seen and id(n) not in negated
                     and isinstance(n, ast.Constant | ast.UnaryOp) and (lit := _literal_text(src, n))
                     and isinstance(lit[0], int | float)]
            texts = [lit[1] for _, lit in found]
            for n, lit in found:
                if texts.count(lit[1]) == 1 and src.line(n.lineno).count(lit[1]) == 1:
                    out.append(_bind(_literal_draft, src, n, lit, rng, func=qualname))
    return out


def _bind(fn: Callable[..., Draft | None], *args: Any, **kwargs: Any) -> Callable[[], Draft | None]:
    return lambda: fn(*args, **kwargs)


def _literal_draft(src: PySource, node: ast.expr, literal: tuple[Any, str], rng: random.Random, *,
                   name: str = "", func: str = "") -> Draft:
    value, old = literal
    spellings = _new_literal(value, old, rng)
    span = src.node_span(node)
    alternatives = [{src.path: replace_spans(src.text, [(span, s)])} for s in spellings]
    if name:
        request = _say(rng, LITERAL_ASSIGNED, path=src.path, name=name, old=old, new=spellings[0])
    else:
        request = _say(rng, LITERAL_IN_FUNCTION, path=src.path, func=func, old=old, new=spellings[0])
    return Draft(request, (src.path,), alternatives[0], alternatives)


# --- rename --------------------------------------------------------------------------------------------

RENAME_ONE = ("Rename the {kind} {old} to {new} in {path}.", "In {path}, rename {old} to {new} and update every use.",
              "Please call the {kind} {old} {new} instead (in {path}).")
RENAME_TWO = ("Rename the {kind} {old} to {new}: it is defined in {a} and used in {b}; update both files.",
              "Rename {old} to {new} everywhere ({a} and {b}).")


def _symbols(src: PySource) -> list[tuple[str, str]]:
    """(name, kind) of the module-level functions, classes and UPPER_CASE constants assigned once."""
    out = []
    stores = _store_names(src)
    for node in src.tree.body:
        if isinstance(node, FunctionNode):
            out.append((node.name, "function"))
        elif isinstance(node, ast.ClassDef):
            out.append((node.name, "class"))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.strip("_").isupper() and stores.get(name) == 1 and name != "__all__":
                out.append((name, "constant"))
    return out


def _is_parameter(node: ast.AST, name: str) -> bool:
    """Whether `node` is a parameter or a keyword argument called `name` (a token rename would change it)."""
    return isinstance(node, ast.arg | ast.keyword) and node.arg == name


def _definition_refs(src: PySource, name: str) -> list[Span] | None:
    """The spans of every use of a module-level `name` in its own file, or None when a plain token rename
    might be wrong (the name is also a parameter, keyword, attribute, import, or defined twice)."""
    defs = uses = 0
    for node in ast.walk(src.tree):
        if isinstance(node, FunctionNode | ast.ClassDef) and node.name == name:
            defs += 1
        elif isinstance(node, ast.Name) and node.id == name:
            uses += 1
        elif isinstance(node, ast.Global | ast.Nonlocal):
            uses += node.names.count(name)
        elif _is_parameter(node, name) or (isinstance(node, ast.alias) and name in (node.name, node.asname)) \
                or (isinstance(node, ast.Attribute) and node.attr == name):
            return None
    tokens = src.name_tokens(name)
    if defs > 1 or len(tokens) != defs + uses:
        return None
    return [src.token_span(t) for t in tokens]


def _imported_refs(src: PySource, module: str, name: str) -> list[Span] | None:
    """The spans of `name` where `src` uses it from `module` (`from module import name`, `module.name`);
    None when a token rename might be wrong; [] when it does not use it."""
    refs = 0
    for node in ast.walk(src.tree):
        if isinstance(node, ast.ImportFrom) and node.module == module and not node.level:
            for alias in node.names:
                if alias.name == name:
                    if alias.asname:
                        return None
                    refs += 1
        elif isinstance(node, ast.Name) and node.id == name:
            refs += 1
        elif isinstance(node, ast.Attribute) and node.attr == name:
            if not (isinstance(node.value, ast.Name) and node.value.id == module):
                return None
            refs += 1
        elif _is_parameter(node, name) or (isinstance(node, FunctionNode | ast.ClassDef) and node.name == name) \
                or (isinstance(node, ast.alias) and node.asname == name):
            return None
    tokens = src.name_tokens(name)
    return [src.token_span(t) for t in tokens] if len(tokens) == refs else None


def _new_name(name: str, kind: str, rng: random.Random, taken: str) -> str | None:
    lead = name[: len(name) - len(name.lstrip("_"))]
    core = name.lstrip("_")
    if kind == "class":
        options = [f"{name}Base", f"{lead}Basic{core}", f"{name}Impl", f"{lead}Simple{core}"]
    elif kind == "constant":
        options = [f"{name}_VALUE", f"{lead}DEFAULT_{core}", f"{name}_CONST"]
    else:
        options = [f"{lead}compute_{core}", f"{name}_impl", f"{lead}do_{core}", f"{name}_value"]
    rng.shuffle(options)
    return next((o for o in options if is_identifier(o) and o not in taken), None)


def _rename_alternatives(files: dict[str, tuple[PySource, list[Span]]], old: str, new: str) -> list[dict[str, str]]:
    """The renamed texts: code only first, then with each combination of mentions in `__all__`, other strings
    and comments renamed too (only the kinds of mention that exist)."""
    mentions = {path: src.mentions(old) for path, (src, _) in files.items()}
    kinds = [k for k in ("all", "strings", "comments") if any(m[k] for m in mentions.values())]
    alternatives = []
    for chosen in itertools.chain.from_iterable(itertools.combinations(kinds, r) for r in range(len(kinds) + 1)):
        alt = {}
        for path, (src, spans) in files.items():
            extra = [s for k in chosen for s in mentions[path][k]]
            alt[path] = replace_spans(src.text, [(s, new) for s in [*spans, *extra]])
        alternatives.append(alt)
    return alternatives


def _rename_candidates(unit: SourceUnit, sources: dict[str, PySource],
                       rng: random.Random) -> list[Callable[[], Draft | None]]:
    out: list[Callable[[], Draft | None]] = []
    for path, src in sources.items():
        others = [o for p, o in sources.items() if p != path]
        for name, kind in _symbols(src):
            if any(o.name_tokens(name) or any(o.mentions(name).values()) for o in others):
                continue  # used from another file: that is the two-file tier
            spans = _definition_refs(src, name)
            if spans and len(spans) >= 2:
                out.append(_bind(_rename_draft, unit, {path: (src, spans)}, name, kind, rng))
    return out


def _two_file_candidates(unit: SourceUnit, sources: dict[str, PySource],
                         rng: random.Random) -> list[Callable[[], Draft | None]]:
    out: list[Callable[[], Draft | None]] = []
    for path, src in sources.items():
        module = path.removesuffix(".py").replace("/", ".")
        for name, kind in _symbols(src):
            own = _definition_refs(src, name)
            if own is None:
                continue
            users = {p: (o, refs) for p, o in sources.items() if p != path
                     and (refs := _imported_refs(o, module, name)) is not None and refs}
            unsafe = [p for p, o in sources.items() if p != path and p not in users
                      and (o.name_tokens(name) or any(o.mentions(name).values()))]
            if len(users) == 1 and not unsafe:
                out.append(_bind(_rename_draft, unit, {path: (src, own), **users}, name, kind, rng))
    return out


def _rename_draft(unit: SourceUnit, files: dict[str, tuple[PySource, list[Span]]], old: str, kind: str,
                  rng: random.Random) -> Draft | None:
    taken = "\n".join(f.data.decode("utf-8", errors="replace") for f in unit.files)
    new = _new_name(old, kind, rng, taken)
    if new is None:
        return None
    alternatives = _rename_alternatives(files, old, new)
    paths = tuple(files)
    if len(paths) == 1:
        request = _say(rng, RENAME_ONE, kind=kind, old=old, new=new, path=paths[0])
    else:
        request = _say(rng, RENAME_TWO, kind=kind, old=old, new=new, a=paths[0], b=paths[1])
    return Draft(request, paths, alternatives[0], alternatives)


# --- import --------------------------------------------------------------------------------------------

IMPORTS = (("import os", "os"), ("import sys", "sys"), ("import re", "re"), ("import math", "math"),
           ("import json", "json"), ("import logging", "logging"), ("import itertools", "itertools"),
           ("import functools", "functools"), ("import time", "time"), ("import warnings", "warnings"),
           ("from pathlib import Path", "Path"), ("from collections import defaultdict", "defaultdict"),
           ("from typing import Any", "Any"), ("from dataclasses import dataclass", "dataclass"))
IMPORT_PHRASES = ("Add `{stmt}` to {path}.", "{path} needs `{stmt}`; add the import.",
                  "Add an import to {path}: {stmt}")
IMPORT_MODULE_PHRASES = ("Import the {name} module in {path}.", "Add `{stmt}` at the top of {path}.")


def _import_positions(src: PySource) -> tuple[list[int], int]:
    """(the lines an import may go after, the one to propose): anywhere from the end of the docstring
    (and `from __future__` imports) to the end of the leading import block and the blank lines after it."""
    body = src.tree.body
    start, i = 0, 0
    if docstring_node(src.tree) is not None:
        start, i = body[0].end_lineno or 0, 1
    while i < len(body) and isinstance(body[i], ast.ImportFrom) and body[i].module == "__future__":
        start, i = body[i].end_lineno or 0, i + 1
    if start == 0 and src.lines and src.lines[0].startswith("#!"):
        start = 1
    block = []
    while i < len(body) and isinstance(body[i], ast.Import | ast.ImportFrom):
        block.append(body[i])
        i += 1
    end = block[-1].end_lineno or 0 if block else start
    proposed = end
    while end < len(src.lines) and src.is_blank(end + 1):
        end += 1
    inside = {n for node in block for n in range(node.lineno, node.end_lineno or node.lineno)}
    return [p for p in range(start, end + 1) if p not in inside], proposed


def _import_candidates(unit: SourceUnit, sources: dict[str, PySource],
                       rng: random.Random) -> list[Callable[[], Draft | None]]:
    out: list[Callable[[], Draft | None]] = []
    for src in sources.values():
        imported = {a.name.split(".")[0] for n in ast.walk(src.tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(src.tree) if isinstance(n, ast.ImportFrom)}
        for stmt, name in IMPORTS:
            module = stmt.split()[1].split(".")[0]
            if not src.name_tokens(name) and module not in imported and not src.name_tokens(module):
                out.append(_bind(_import_draft, src, stmt, name, rng))
    return out


def _import_draft(src: PySource, stmt: str, name: str, rng: random.Random) -> Draft:
    positions, proposed = _import_positions(src)
    nl = src.newline
    shapes = ([stmt + nl], [stmt + nl, nl], [nl, stmt + nl])
    first = shapes[1] if proposed == 0 and src.lines and not src.is_blank(1) else shapes[0]
    solution = splice_lines(src.lines, proposed + 1, proposed, first)
    alternatives = _unique([{src.path: solution}] + [{src.path: splice_lines(src.lines, p + 1, p, shape)}
                                                     for p in positions for shape in shapes])
    phrases = IMPORT_PHRASES + (IMPORT_MODULE_PHRASES if stmt.startswith("import ") else ())
    request = _say(rng, phrases, stmt=stmt, name=name, path=src.path)
    return Draft(request, (src.path,), {src.path: solution}, alternatives)


# --- function ------------------------------------------------------------------------------------------

FUNCTION_PHRASES = ("Add a function {signature} to {path} that {does}.",
                    "In {path}, write a new function {signature}: it {does}.",
                    "I need {signature} in {path}; it {does}.")


@dataclass(frozen=True)
class FunctionSpec:
    """A small function a task asks for: data/functions.toml."""

    name: str
    signature: str
    does: str
    tests: str
    code: str


@cache
def function_specs() -> tuple[FunctionSpec, ...]:
    data = tomllib.loads(resources.files("cb.editbench").joinpath("data/functions.toml").read_text("utf-8"))
    return tuple(FunctionSpec(**entry) for entry in data["function"])


# Loads a workspace module by its path (never a same-named module Python already imported).
LOAD_HELPER = '''
import importlib.util as _ilu


def load(path):
    name = "editbench_" + path.removesuffix(".py").replace("/", "_")
    spec = _ilu.spec_from_file_location(name, path)
    module = _ilu.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
'''


def _function_candidates(unit: SourceUnit, sources: dict[str, PySource],
                         rng: random.Random) -> list[Callable[[], Draft | None]]:
    return [_bind(_function_draft, src, spec, rng) for src in sources.values() for spec in function_specs()
            if not src.name_tokens(spec.name)]


def _function_draft(src: PySource, spec: FunctionSpec, rng: random.Random) -> Draft:
    nl = src.newline
    text = src.text if src.text.endswith("\n") else src.text + nl
    solution = text + nl + nl + spec.code.strip("\n").replace("\n", nl) + nl
    script = f"{LOAD_HELPER}\nf = getattr(load({src.path!r}), {spec.name!r})\n{spec.tests}"
    request = _say(rng, FUNCTION_PHRASES, signature=spec.signature, path=src.path, does=spec.does)
    return Draft(request, (src.path,), {src.path: solution}, script=script, keep=(src.path,))


# --- delete --------------------------------------------------------------------------------------------

DELETE_IMPORT = ("Remove the unused import of {name} from {path}.",
                 "{path} imports {name} but never uses it; delete that import.",
                 "Delete the line `{line}` from {path}: it is not needed.")
MAX_DELETED_LINES = 25  # a function to delete is a small one, and not the only one of its file
DELETE_DEF = ("Delete the function {name} from {path}; nothing uses it.", "Remove {name} from {path}, it is dead code.",
              "{path}: the function {name} is unused. Delete it.")


def _delete_candidates(unit: SourceUnit, sources: dict[str, PySource],
                       rng: random.Random) -> list[Callable[[], Draft | None]]:
    out: list[Callable[[], Draft | None]] = []
    for path, src in sources.items():
        definitions = sum(isinstance(node, FunctionNode | ast.ClassDef) for node in src.tree.body)
        for node in src.tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom) and len(node.names) == 1 and node.names[0].name != "*" \
                    and node.lineno == node.end_lineno:
                alias = node.names[0]
                bound = alias.asname or alias.name.split(".")[0]
                module = path.removesuffix(".py").replace("/", ".")
                unused = not [t for t in src.name_tokens(bound) if t.start[0] != node.lineno] \
                    and not any(src.mentions(bound)["all"]) \
                    and all(_imported_refs(o, module, bound) == [] for p, o in sources.items() if p != path)
                if unused:
                    out.append(_bind(_delete_import_draft, src, node, bound, rng))
            elif isinstance(node, FunctionNode) and (node.end_lineno or 0) - node.lineno < MAX_DELETED_LINES \
                    and definitions > 1:
                used = sum(len(o.name_tokens(node.name)) for o in sources.values())
                mentioned = any(any(o.mentions(node.name).values()) for o in sources.values())
                if used == 1 and not mentioned:
                    out.append(_bind(_delete_def_draft, src, node, rng))
    return out


def _delete_import_draft(src: PySource, node: ast.stmt, bound: str, rng: random.Random) -> Draft:
    solution = splice_lines(src.lines, node.lineno, node.lineno, [])
    request = _say(rng, DELETE_IMPORT, name=bound, path=src.path, line=src.line(node.lineno).strip())
    return Draft(request, (src.path,), {src.path: solution}, [{src.path: solution}])


def _delete_def_draft(src: PySource, node: FunctionNode, rng: random.Random) -> Draft:
    first, last = src.first_line(node), node.end_lineno or node.lineno
    comments = first
    while comments > 1 and src.is_comment(comments - 1):
        comments -= 1
    tops = sorted({first, comments})
    blank_before = 0
    while tops[0] - blank_before > 1 and src.is_blank(tops[0] - blank_before - 1):
        blank_before += 1
    blank_after = 0
    while last + blank_after < len(src.lines) and src.is_blank(last + blank_after + 1):
        blank_after += 1
    at_end = last + blank_after == len(src.lines)
    alternatives = []
    for top in tops[::-1]:
        for before in range(min(blank_before, 2) + 1) if top == tops[0] else [0]:
            for after in range(min(blank_after, 2) + 1):
                alternatives.append({src.path: splice_lines(src.lines, top - before, last + after, [])})
    # the natural deletion: with its comment, and the blank lines that separated it from what follows
    # (or, at the end of the file, from what precedes it)
    natural = splice_lines(src.lines, tops[0] - (blank_before if at_end else 0),
                           last + (blank_after if at_end else min(blank_after, 2)), [])
    request = _say(rng, DELETE_DEF, name=node.name, path=src.path)
    return Draft(request, (src.path,), {src.path: natural}, _unique([{src.path: natural}, *alternatives]))


# --- rewrite -------------------------------------------------------------------------------------------

SHORTEN_DOC = ("Shorten the docstring of {name} in {path} to its first line.",
               "In {path}, make the docstring of {name} a one-liner: keep only its first line.")
STUB = ("Replace the body of {name} in {path} with `raise NotImplementedError`{keep}.",
        "Stub out {name} in {path}: its body should just raise NotImplementedError{keep}.")


def _rewrite_candidates(unit: SourceUnit, sources: dict[str, PySource],
                        rng: random.Random) -> list[Callable[[], Draft | None]]:
    out: list[Callable[[], Draft | None]] = []
    for src in sources.values():
        for qualname, fn in src.functions():
            doc = docstring_node(fn)
            if doc is not None and doc.lineno != doc.end_lineno:
                opening = src.line(doc.lineno).lstrip()
                quote = opening[:3]
                first = opening[3:].strip()
                if quote in ('"""', "'''") and first and quote not in first \
                        and src.line(doc.end_lineno or doc.lineno).rstrip().endswith(quote):
                    out.append(_bind(_shorten_doc_draft, src, qualname, doc, quote + first + quote, rng))
            statements = fn.body[1:] if doc is not None else fn.body
            if statements and len(fn.body) >= 2 and fn.body[0].lineno > fn.lineno:
                out.append(_bind(_stub_draft, src, qualname, fn, doc, rng))
    return out


def _shorten_doc_draft(src: PySource, name: str, doc: ast.Expr, new: str, rng: random.Random) -> Draft:
    indent = src.line(doc.lineno)[: len(src.line(doc.lineno)) - len(src.line(doc.lineno).lstrip())]
    solution = splice_lines(src.lines, doc.lineno, doc.end_lineno or doc.lineno, [indent + new + src.newline])
    request = _say(rng, SHORTEN_DOC, name=name, path=src.path)
    return Draft(request, (src.path,), {src.path: solution}, [{src.path: solution}])


def _stub_draft(src: PySource, name: str, fn: FunctionNode, doc: ast.Expr | None, rng: random.Random) -> Draft:
    body_line = src.line(fn.body[0].lineno)
    indent = body_line[: len(body_line) - len(body_line.lstrip())]
    first = (doc.end_lineno or doc.lineno) + 1 if doc is not None else src.header_end(fn) + 1
    last = fn.end_lineno or fn.lineno
    alternatives = [{src.path: splice_lines(src.lines, first, last, [f"{indent}{stmt}{src.newline}"])}
                    for stmt in ("raise NotImplementedError", "raise NotImplementedError()")]
    keep = ", keeping its docstring" if doc is not None else ""
    request = _say(rng, STUB, name=name, path=src.path, keep=keep)
    return Draft(request, (src.path,), alternatives[0], alternatives)


# --- bugfix --------------------------------------------------------------------------------------------

FLIPS: dict[type, tuple[str, str]] = {
    ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"), ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="), ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.And: ("and", "or"), ast.Or: ("or", "and"),
}
BUGFIX = ("There is a bug in {func} ({path}): one `{bad}` should be `{good}`. Fix it.",
          "{func} in {path} is wrong: it uses `{bad}` where it should use `{good}`. Please fix it.",
          "Fix {func} in {path}: a `{good}` was mistyped as `{bad}`.")


def _is_text(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)


def _operands(node: ast.AST) -> tuple[type, ast.expr, ast.expr] | None:
    """(operator type, left operand, right operand) of a one-operator comparison, +/- or and/or."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in FLIPS:
        return type(node.ops[0]), node.left, node.comparators[0]
    if isinstance(node, ast.BinOp) and type(node.op) in FLIPS and not (_is_text(node.left) or _is_text(node.right)):
        return type(node.op), node.left, node.right
    if isinstance(node, ast.BoolOp) and len(node.values) == 2:
        return type(node.op), node.values[0], node.values[1]
    return None


def _bugfix_candidates(unit: SourceUnit, sources: dict[str, PySource],
                       rng: random.Random) -> list[Callable[[], Draft | None]]:
    out: list[Callable[[], Draft | None]] = []
    for src in sources.values():
        for qualname, fn in src.functions():
            for node in ast.walk(fn):
                found = _operands(node)
                if found is None or node.lineno != node.end_lineno:
                    continue
                op, left, right = found
                good, bad = FLIPS[op]
                between = Span(src.node_span(left).end, src.node_span(right).start)
                tokens = [t for t in src.tokens_on(node.lineno) if t.string == good
                          and between.start <= src.token_span(t).start and src.token_span(t).end <= between.end]
                if len(tokens) == 1:
                    out.append(_bind(_bugfix_draft, src, qualname, fn, src.token_span(tokens[0]), good, bad, rng))
    return out


def _bugfix_draft(src: PySource, func: str, fn: FunctionNode, span: Span, good: str, bad: str,
                  rng: random.Random) -> Draft | None:
    broken = replace_spans(src.text, [(span, bad)])
    try:
        mutated = PySource(src.path, broken)
    except SyntaxError:
        return None
    if len([t for n in range(fn.lineno, (fn.end_lineno or fn.lineno) + 1) for t in mutated.tokens_on(n)
            if t.string == bad]) != 1:
        return None
    request = _say(rng, BUGFIX, func=func, path=src.path, bad=bad, good=good)
    return Draft(request, (src.path,), {src.path: src.text}, [{src.path: src.text}], files={src.path: broken})


MAKERS: dict[str, Maker] = {
    "literal": _literal_candidates, "rename": _rename_candidates, "import": _import_candidates,
    "function": _function_candidates, "delete": _delete_candidates, "rewrite": _rewrite_candidates,
    "bugfix": _bugfix_candidates, "two-file": _two_file_candidates,
}


# --- layout variants -----------------------------------------------------------------------------------


def _to_crlf(data: bytes) -> bytes | None:
    if b"\r" in data:
        return None
    return data.replace(b"\n", b"\r\n")


def _to_tabs(data: bytes) -> bytes | None:
    """Each leading run of four spaces as a tab; None when the file already has tabs or does not compile
    after (odd indentation)."""
    if b"\t" in data:
        return None
    out = []
    for line in data.split(b"\n"):
        body = line.lstrip(b" ")
        spaces = len(line) - len(body)
        out.append(b"\t" * (spaces // 4) + b" " * (spaces % 4) + body)
    converted = b"\n".join(out)
    try:
        compile(converted, "<tabs>", "exec", dont_inherit=True)
    except SyntaxError:
        return None
    return converted


def _without_final_newline(data: bytes) -> bytes | None:
    return data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else None


LAYOUTS: dict[str, Callable[[bytes], bytes | None]] = {"crlf": _to_crlf, "tabs": _to_tabs,
                                                        "no-eol": _without_final_newline}
assert tuple(LAYOUTS) == LAYOUT_TIERS


def layout_variant(task: Task, variant: str) -> Task | None:
    """`task` with every file (before, expected, solution) in the layout `variant`; None when a file cannot
    take it (already has CR or tabs, no final newline to remove, odd indentation)."""
    transform = LAYOUTS[variant]

    def each(files: Mapping[str, bytes]) -> dict[str, bytes] | None:
        out = {p: transform(b) for p, b in files.items()}
        return None if any(v is None for v in out.values()) else out  # type: ignore[return-value]

    files = each(task.files)
    solution = each(task.solution)
    expect = [each(alt) for alt in task.check.expect]
    if files is None or solution is None or any(e is None for e in expect):
        return None
    check = replace(task.check, expect=tuple(e for e in expect if e is not None))
    return replace(task, id=f"{variant}:{task.id}", tier=variant, files=files, solution=solution,
                   check=check, base_tier=task.tier)
