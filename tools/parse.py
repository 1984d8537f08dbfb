"""Model text → proposals: the block format of `tools.format`, and OpenAI tool-call JSON for the same tools.

Pure functions, string in, result out. Nothing here touches files: checking versions and line ranges
against the disk is `tools.plan`'s job. A malformed block becomes a `ParseError` naming the block, what
is wrong and the line of the answer it starts on, so cb can show it or feed it back to the model; the
well-formed blocks around it are still returned (the batch is all-or-nothing later, at apply time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tools.format import ATTRIBUTE, LONG_NAMES, OPEN_TAG, close_tag
from tools.ops import by_name
from tools.proposals import Proposal

_FENCE_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})[\w+.-]*[ \t]*")
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


def _parse_blocks(text: str) -> ParseResult:
    proposals: list[Proposal] = []
    errors: list[ParseError] = []
    pos = 0
    while m := OPEN_TAG.search(text, pos):
        name = m.group(1).lower()
        line = text.count("\n", 0, m.start()) + 1
        short = LONG_NAMES.get(name, name)
        if m.group(2).rstrip().endswith("/"):  # <replace ... /> : a block with an empty body
            body_raw, pos = "", m.end()
        else:
            close = close_tag(name).search(text, m.end())
            following = OPEN_TAG.search(text, m.end())
            if close is None or (following is not None and following.start() < close.start()):
                # A missing close tag must not swallow the next block.
                errors.append(ParseError(line, short, f"is not closed (expected </{short}>)"))
                pos = m.end()
                continue
            body_raw, pos = text[m.end():close.start()], close.end()
        try:
            attrs = _attributes(m.group(2))
            spec = by_name(name)
            assert spec is not None  # OPEN_TAG only matches known names
            proposals.append(spec.build({**attrs, spec.body: _body(body_raw)}))
        except ValueError as exc:
            errors.append(ParseError(line, short, str(exc)))
    return ParseResult(tuple(proposals), tuple(errors))


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
    candidates = [stripped] if stripped[:1] in "{[" and stripped else []
    candidates += [m.group(1) for m in _JSON_FENCE.finditer(text)]
    results = [r for c in candidates if (r := _json_calls(c)) is not None]
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
    spec = by_name(str(inner["name"]))
    if spec is None:
        raise ValueError(f"is not a tool I know (the tools are: edit, replace, insert, create, run): {inner['name']!r}")
    args = inner.get("arguments", inner.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            raise ValueError(f"has arguments that are not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(args, Mapping):
        raise ValueError("has arguments that are not a JSON object")
    return spec.build({str(k): v for k, v in args.items()})
