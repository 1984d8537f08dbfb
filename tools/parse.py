"""Model text → proposals: the block format of `tools.format`, and OpenAI tool-call JSON for the same tools.

Pure functions, string in, result out. Nothing here touches files: checking versions, line ranges and
copied lines against the disk is `tools.plan`'s job. A malformed block becomes a `ParseError` naming the
block, what is wrong and the line of the answer it starts on, so cb can show it or feed it back to the
model; the well-formed blocks around it are still returned (the batch is all-or-nothing later, at apply
time). Tool calls written as text are read when an answer holds no block: the whole answer as JSON,
```json fences, or `<tool_call>` tags (how Qwen2.5's chat template writes them, should a server pass them
on as text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tools.format import ATTRIBUTE, LONG_NAMES, OPEN_TAG, PART_OPEN, SECTIONS, close_tag
from tools.ops import OFFERED, by_name, candidates
from tools.proposals import Proposal
from tools.spec import ToolSpec

_FENCE_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})[\w+.-]*[ \t]*")
_SPACE = re.compile(r"\s*")
_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)  # Qwen2.5's template, as plain text
_JSON_FENCE = re.compile(r"^[ \t]*```(?:json)?[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class ParseError:
    """A malformed block: where it starts in the answer (1-based line) and what is wrong."""

    line: int
    block: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: <{self.block}> {self.message}"


@dataclass(frozen=True)
class ParseResult:
    """What an answer proposes, in order, and the blocks that could not be read."""

    proposals: tuple[Proposal, ...]
    errors: tuple[ParseError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_proposals(text: str) -> ParseResult:
    """Read every proposal in a model answer: edit blocks, or OpenAI tool calls written as JSON."""
    text = text.replace("\r\n", "\n")
    blocks = _parse_blocks(text)
    if blocks.proposals or blocks.errors:
        return blocks
    return _parse_json_text(text)


def parse_tool_calls(calls: Iterable[Mapping[str, object]]) -> ParseResult:
    """Read OpenAI tool calls: {"function": {"name", "arguments"}} (arguments a JSON string or object)."""
    proposals: list[Proposal] = []
    errors: list[ParseError] = []
    for index, call in enumerate(calls, start=1):
        try:
            proposals.append(_tool_call(call))
        except ValueError as exc:
            name = call.get("function", call) if isinstance(call, Mapping) else call
            label = str(name.get("name", "tool call")) if isinstance(name, Mapping) else "tool call"
            errors.append(ParseError(index, label, str(exc)))
    return ParseResult(tuple(proposals), tuple(errors))


# --- blocks --------------------------------------------------------------------------------------------


class _BlockError(ValueError):
    """A block that cannot be read: the message, and where to go on looking for blocks."""

    def __init__(self, message: str, resume: int) -> None:
        super().__init__(message)
        self.resume = resume


def _parse_blocks(text: str) -> ParseResult:
    proposals: list[Proposal] = []
    errors: list[ParseError] = []
    pos = 0
    while m := OPEN_TAG.search(text, pos):
        line = text.count("\n", 0, m.start()) + 1
        try:
            proposal, pos = _block(text, m)
            proposals.append(proposal)
        except _BlockError as exc:
            name = m.group(1).lower()
            errors.append(ParseError(line, LONG_NAMES.get(name, name), str(exc)))
            pos = exc.resume
    return ParseResult(tuple(proposals), tuple(errors))


def _block(text: str, m: re.Match[str]) -> tuple[Proposal, int]:
    """The proposal of the block opened by `m`, and the position after the block; raises _BlockError."""
    name = m.group(1).lower()
    short = LONG_NAMES.get(name, name)
    parts: dict[str, str] | None = None
    body = ""
    if m.group(2).rstrip().endswith("/"):  # <replace ... /> : a block with an empty body
        end = m.end()
    elif PART_OPEN.match(text, m.end()):
        parts, end = _parts(text, m)
    else:
        close = _close_before_next_block(text, name, m.end())
        if close is None:
            raise _BlockError(f"is not closed (expected </{short}>)", m.end())
        body, end = _body(text[m.end():close.start()]), close.end()
    try:
        attrs = _attributes(m.group(2))
        spec = _choose(name, attrs, parts)
        if parts is None:
            if not spec.body and not spec.sections:  # attributes only (<rename .../>)
                if body.strip():
                    raise ValueError(f"takes no text; {spec.usage}")
                return spec.build(attrs), end
            if not spec.body:
                raise ValueError(spec.usage)
            return spec.build({**attrs, spec.body: body}), end
        if not spec.sections:
            if set(parts) != {"new"}:
                raise ValueError(f"takes its text as its body, not in <{'>, <'.join(parts)}> parts")
            return spec.build({**attrs, spec.body: parts["new"]}), end
        return spec.build({**{k: v for k, v in attrs.items() if k not in spec.sections}, **parts}), end
    except ValueError as exc:
        raise _BlockError(str(exc), end) from None


def _choose(name: str, attrs: dict[str, str], parts: dict[str, str] | None) -> ToolSpec:
    """The tool a block means: of the tools its tag names, the one its attributes and shape fit best."""
    found = candidates(name)
    assert found, name  # OPEN_TAG only matches known names
    if parts is not None and not any(t.offered for t in found):  # <edit> with parts: read by its parts
        found = [t for t in OFFERED if t.sections and set(parts) <= set(t.sections)] or found

    def fit(t: ToolSpec) -> tuple[int, bool]:
        named = sum(k in t.attributes or k in t.aliases for k in attrs)
        shaped = bool(t.body) if parts is None else sum(k in t.sections for k in parts)
        return named + shaped, t.offered

    spec = max(found, key=fit)
    if parts is None and not spec.offered:
        offered = next((t for t in found if t.offered and t.sections), None)
        numbered = any(k not in ("path", "version") and spec.accepts(k) for k in attrs)
        if offered is not None and not numbered:
            raise ValueError(offered.usage)  # a v2 block written without its parts
    return spec


def _parts(text: str, m: re.Match[str]) -> tuple[dict[str, str], int]:
    """The parts <old>…</old> of the block opened by `m` up to its closing tag, and the position after it."""
    short = LONG_NAMES.get(m.group(1).lower(), m.group(1).lower())
    block_close = close_tag(m.group(1))
    parts: dict[str, str] = {}
    pos = m.end()
    while True:
        part = PART_OPEN.match(text, pos)
        if part is None:
            break
        name = part.group(1).lower()
        if name in parts:
            raise _BlockError(f"has <{name}> twice", _resume(text, m, part.end()))
        if part.group(2):  # <new/>
            parts[name], pos = "", part.end()
            continue
        close = _close_before_next_block(text, name, part.end())
        if close is None:
            raise _BlockError(f"has a <{name}> part that is not closed (expected </{name}>)", part.end())
        parts[name], pos = _body(text[part.end():close.start()]), close.end()
    gap = _SPACE.match(text, pos).end()
    if done := block_close.match(text, gap):
        return parts, done.end()
    stray = text[gap:gap + 40].split("\n")[0]
    if not stray or OPEN_TAG.match(text, gap):
        raise _BlockError(f"is not closed (expected </{short}>)", gap)
    names = ", ".join(f"<{s}>" for s in SECTIONS)
    raise _BlockError(f"has text outside its parts: {stray!r} (only {names} parts go inside <{short}>)",
                      _resume(text, m, gap))


def _close_before_next_block(text: str, name: str, start: int) -> re.Match[str] | None:
    """The closing tag of `name` after `start`, unless the next block opens first (a forgotten close)."""
    close = close_tag(name).search(text, start)
    following = OPEN_TAG.search(text, start)
    if close is None or (following is not None and following.start() < close.start()):
        return None
    return close


def _resume(text: str, m: re.Match[str], pos: int) -> int:
    """Where to go on after a bad block: after its closing tag when it has one, else at `pos`."""
    close = _close_before_next_block(text, m.group(1), pos)
    return close.end() if close is not None else pos


def _attributes(raw: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    pos = 0
    raw = raw.rstrip().removesuffix("/").rstrip()
    while pos < len(raw):
        m = ATTRIBUTE.match(raw, pos)
        if m is None:
            raise ValueError(f"has an attribute I cannot read: {raw[pos:].strip()[:40]!r} (write name=\"value\")")
        key = m.group(1).lower()
        if key in attrs:
            raise ValueError(f"has {key}= twice")
        attrs[key] = next(g for g in m.groups()[1:] if g is not None)
        pos = m.end()
    return attrs


def _body(raw: str) -> str:
    """The body text between the tags, as the content it stands for (see tools.format)."""
    first, nl, rest = raw.partition("\n")
    if not nl or first.strip():
        return raw  # inline: <edit ...>text</edit>
    last_nl = rest.rfind("\n")
    if rest[last_nl + 1:].strip() == "":
        rest = rest[:last_nl + 1]  # the closing tag's own indentation is not content
    return _unfence(rest)


def _unfence(body: str) -> str:
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) >= 2 and (m := _FENCE_OPEN.fullmatch(lines[0])) and lines[-1].strip() == m.group(1):
        inner = lines[1:-1]
        return "".join(line + "\n" for line in inner)
    return body


# --- JSON tool calls -----------------------------------------------------------------------------------


def _parse_json_text(text: str) -> ParseResult:
    stripped = text.strip()
    texts = [stripped] if stripped[:1] in "{[" and stripped else []
    texts += [m.group(1) for m in _JSON_FENCE.finditer(text)]
    texts += [m.group(1) for m in _TOOL_CALL_TAG.finditer(text)]
    results = [r for c in texts if (r := _json_calls(c)) is not None]
    return ParseResult(tuple(p for r in results for p in r.proposals), tuple(e for r in results for e in r.errors))


def _json_calls(candidate: str) -> ParseResult | None:
    try:
        data = json.loads(candidate)
    except ValueError:
        return None
    if isinstance(data, Mapping) and isinstance(data.get("tool_calls"), list):
        data = data["tool_calls"]
    calls = data if isinstance(data, list) else [data]
    if not calls or not all(isinstance(c, Mapping) and _looks_like_call(c) for c in calls):
        return None
    return parse_tool_calls(calls)


def _looks_like_call(call: Mapping[str, object]) -> bool:
    inner = call.get("function", call)
    return isinstance(inner, Mapping) and "name" in inner and ("arguments" in inner or "parameters" in inner)


def _tool_call(call: Mapping[str, object]) -> Proposal:
    inner = call.get("function", call)
    if not isinstance(inner, Mapping) or not isinstance(inner.get("name"), str):
        raise ValueError("has no function name")
    args = inner.get("arguments", inner.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            raise ValueError(f"has arguments that are not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(args, Mapping):
        raise ValueError("has arguments that are not a JSON object")
    spec = by_name(str(inner["name"]), (str(k) for k in args))
    if spec is None:
        known = ", ".join(t.name for t in OFFERED)
        raise ValueError(f"is not a tool I know (the tools are: {known}): {inner['name']!r}")
    return spec.build({str(k): v for k, v in args.items()})
