"""ToolSpec: one edit tool described once, from its typed function and its docstring.

The OpenAI tool schema (`ToolSpec.schema()`) is derived from the function's signature (int → integer,
str → string, Literal["a", "b"] → a string enum, a default → optional) and its Google-style docstring
(first paragraph → description, `Args:` → parameter descriptions), so there is no second hand-written
schema to drift. `build()` turns loosely typed arguments (block attributes are strings, JSON may hold
"12") into a proposal, or raises ValueError with a one-line reason.

In the text format (tools.format) a tool is a block `<tag attr="…">`: its text parameters are either the
block's one body (`body`, format v1 and `create` / `run`) or named parts inside it (`sections`, format v2:
`<old>…</old>`); every other parameter is an attribute.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.proposals import Proposal, canonical_content

_JSON_TYPES = {int: "integer", str: "string"}


def _json_type(hint: Any) -> dict[str, Any]:
    if typing.get_origin(hint) is typing.Literal:
        return {"type": "string", "enum": list(typing.get_args(hint))}
    return {"type": _JSON_TYPES[hint]}


def _docstring_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    doc = inspect.getdoc(fn) or ""
    head, _, rest = doc.partition("\nArgs:\n")
    description = " ".join(head.split("\n\n")[0].split())
    args: dict[str, str] = {}
    current = ""
    for line in rest.splitlines():
        m = re.match(r"\s+(\w+):\s*(.*)", line)
        if m and line.startswith("    ") and not line.startswith("        "):
            current = m.group(1)
            args[current] = m.group(2).strip()
        elif current and line.strip():
            args[current] += " " + line.strip()
        elif not line.strip():
            current = ""
    return description, args


@dataclass(frozen=True)
class ToolSpec:
    """An edit tool: its function (the name and schema for tool calls) and its block tag in the text format."""

    function: Callable[..., Proposal]
    tag: str  # the block name in the text format, e.g. "replace"
    body: str = ""  # the parameter the block's body fills ("content" or "command"); "" when it has sections
    sections: tuple[str, ...] = ()  # the parameters given as parts <name>…</name> of the block, in order
    aliases: Mapping[str, str] = field(default_factory=dict)  # extra attribute names → parameter
    destructive: bool = True
    offered: bool = True  # taught in INSTRUCTIONS and offered in tool_schemas(); False: only read (format v1)
    usage: str = ""  # what a block of this tag needs, for an error when it has the wrong shape

    @property
    def name(self) -> str:
        return self.function.__name__

    @property
    def description(self) -> str:
        return _docstring_parts(self.function)[0]

    @property
    def attributes(self) -> tuple[str, ...]:
        """The parameters written as block attributes (neither the body nor a section), in signature order."""
        params = inspect.signature(self.function).parameters
        return tuple(n for n in params if n != self.body and n not in self.sections)

    def accepts(self, key: str) -> bool:
        """Whether an argument called `key` (a parameter or an alias) means something to this tool."""
        return key in inspect.signature(self.function).parameters or key in self.aliases

    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments, from the signature and the docstring's Args section."""
        hints = typing.get_type_hints(self.function)
        _, arg_docs = _docstring_parts(self.function)
        props: dict[str, Any] = {}
        required: list[str] = []
        for name, param in inspect.signature(self.function).parameters.items():
            props[name] = {**_json_type(hints[name]), "description": arg_docs.get(name, "")}
            if param.default is inspect.Parameter.empty:
                required.append(name)
            else:
                props[name]["default"] = param.default
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}

    def schema(self) -> dict[str, Any]:
        """The OpenAI chat-completions tool definition."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters()}}

    def build(self, args: Mapping[str, object]) -> Proposal:
        """Make the proposal from loosely typed arguments; raises ValueError naming what is wrong."""
        hints = typing.get_type_hints(self.function)
        params = inspect.signature(self.function).parameters
        kwargs: dict[str, object] = {}
        for key, value in args.items():
            name = self.aliases.get(key, key)
            if name not in params:
                continue  # unknown attributes (lang="python", …) carry nothing we need
            kwargs[name] = _coerce(name, value, hints[name])
        missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs]
        if missing:
            shown = [f"{next((a for a, n in self.aliases.items() if n == m), m)}=" for m in missing
                     if m != self.body and m not in self.sections]
            shown += [f"a <{m}> part" for m in missing if m in self.sections]
            if self.body in missing:
                shown.append(f"a body (the {self.body})")
            raise ValueError("needs " + " and ".join(shown))
        for name in (*self.sections, *(("content",) if self.body == "content" else ())):
            if isinstance(kwargs.get(name), str):
                kwargs[name] = canonical_content(str(kwargs[name]))
        return self.function(**kwargs)


def _coerce(name: str, value: object, kind: Any) -> object:
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"{name}={value!r} is not a line number")
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        raise ValueError(f"{name}={value!r} is not a line number")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    return value
