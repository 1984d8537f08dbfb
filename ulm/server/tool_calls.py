"""OpenAI tool calls on a model that writes them as text: the prompt that offers the tools, the grammar that
makes `tool_choice` hold, and the calls read back out of the answer (whole or streamed).

The wire format is Hermes' (Qwen2.5's chat template teaches it): each call is a JSON object on its own line
between tags,

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Oslo"}}
    </tool_call>

- `template_messages(messages, tools, native)`: the conversation for the chat template. A template that knows
  tools (`native`: it reads a `tools` variable, as Qwen2.5's does) gets the tools and the assistant turns'
  calls as data; for any other template the tools are described in the system message and earlier calls and
  tool results are written in the wire format (results as `<tool_response>` in a user turn, as Qwen does).
- `tool_grammar(tools, choice, parallel, special)`: Lark for llguidance (the tags as special tokens where the
  vocabulary has them so, as Qwen2.5's does). "auto": free text (which cannot spell
  `<tool_call>`) or text followed by calls; "required": calls only; a named function: one call of it.
  The arguments match each function's `parameters` schema. `parallel=False` allows exactly one call.
- `split_calls(text)`: (content or None, OpenAI tool_calls) of a finished answer; `CallStream` turns streamed
  text into content deltas and one tool_calls delta per call, as each call's closing tag arrives.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

OPEN, CLOSE = "<tool_call>\n", "\n</tool_call>"
_TAG = "<tool_call>"
_TEXT = r"/(?s:.*)/ & ~/(?s:.*)<tool_call>(?s:.*)/"  # text that does not spell the opening tag
_JSON_OPTIONS = {"whitespace_flexible": False}

Message = dict[str, Any]


def describe_tools(tools: Sequence[Message]) -> str:
    """The system text that offers `tools` (OpenAI tool objects) to a model whose template has no tools."""
    listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return ("You may call one or more functions to assist with the user query.\n\n"
            f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{listed}\n</tools>"
            "\n\nFor each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call>")


def takes_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template reads a `tools` variable (Qwen2.5's does): tools go to it, not
    into a system message."""
    return "tools" in str(getattr(tokenizer, "chat_template", None) or "")


def template_messages(messages: Sequence[Message], tools: Sequence[Message] | None, native: bool) -> list[Message]:
    """`messages` (OpenAI shape, content as text) ready for a chat template (see the module docstring)."""
    if native:
        return [_native(m) for m in messages]
    out: list[Message] = []
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            calls = "\n".join(OPEN + json.dumps({"name": c["function"]["name"],
                                                 "arguments": _arguments(c["function"]["arguments"])},
                                                ensure_ascii=False) + CLOSE for c in m["tool_calls"])
            out.append({"role": "assistant", "content": ((m.get("content") or "") + "\n" + calls).lstrip("\n")})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    if tools:
        offer = describe_tools(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + offer}
        else:
            out.insert(0, {"role": "system", "content": offer})
    return out


def _native(m: Message) -> Message:
    out = {k: m[k] for k in ("role", "content", "tool_call_id") if m.get(k) is not None}
    out.setdefault("content", "")
    if m.get("tool_calls"):
        out["tool_calls"] = [{"type": "function", "id": c.get("id"),
                              "function": {"name": c["function"]["name"],
                                           "arguments": _arguments(c["function"]["arguments"])}}
                             for c in m["tool_calls"]]
    return out


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def call_schema(tools: Sequence[Message]) -> dict[str, Any]:
    """JSON Schema of one call object: {"name": one of the tools, "arguments": that tool's parameters}."""
    options = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                "properties": {"name": {"const": t["function"]["name"]},
                               "arguments": t["function"].get("parameters") or {"type": "object"}}}
               for t in tools]
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "x-guidance": _JSON_OPTIONS}


def tool_grammar(tools: Sequence[Message], choice: str | dict[str, Any], parallel: bool,
                 special: tuple[int, int] | None = None) -> str:
    """Lark: the answers `choice` ("auto", "required" or {"type": "function", "function": {"name"}}) allows.
    `special`: the ids of `<tool_call>` and `</tool_call>` where the vocabulary has them as special tokens
    (Qwen2.5), which the model then writes instead of their text."""
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        tools, parallel = [t for t in tools if t["function"]["name"] == name], False
    more = "*" if parallel else ""
    if special is None:  # the tags are text: prose is lexed with the tag after it (llguidance's lexer is greedy)
        first = f'TEXT "{_escaped(OPEN)}"' if choice == "auto" else f'"{_escaped(OPEN)}"'
        rules = ["start: TEXT | calls" if choice == "auto" else "start: calls",
                 "calls: FIRST call (NEXT call)* LAST" if parallel else "calls: FIRST call LAST", f"FIRST: {first}",
                 f'NEXT: "{_escaped(CLOSE + chr(10) + OPEN)}"', f'LAST: "{_escaped(CLOSE)}"']
    else:
        opened, closed = f"<[{special[0]}]>", f"<[{special[1]}]>"
        rules = ["start: TEXT | calls | TEXT calls" if choice == "auto" else "start: calls",
                 f'calls: one ("\\n" one){more}', f'one: {opened} "\\n" call "\\n" {closed}']
    rules += [f"call: %json {json.dumps(call_schema(tools))}", f"TEXT: {_TEXT}"]
    return "\n".join(["%llguidance {}", *rules]) + "\n"


def _escaped(text: str) -> str:
    return json.dumps(text)[1:-1]


def split_calls(text: str) -> tuple[str | None, list[Message]]:
    """The prose before the first call (None when there is none) and the calls, in OpenAI's shape; text with
    no complete call is all content."""
    at = text.find(_TAG)
    if at < 0:
        return text, []
    calls: list[Message] = []
    decoder = json.JSONDecoder()
    rest = text[at:]
    while rest.startswith(_TAG):
        body = rest[len(_TAG):].lstrip()
        try:
            obj, end = decoder.raw_decode(body)
        except ValueError:
            break
        after = body[end:].lstrip()
        if not after.startswith("</tool_call>") or not isinstance(obj, dict) or "name" not in obj:
            break
        calls.append(openai_call(obj))
        rest = after[len("</tool_call>"):].lstrip()
    if not calls:
        return text, []
    content = text[:at].strip()
    return content or None, calls


def openai_call(obj: Message) -> Message:
    """{"name", "arguments"} → an OpenAI tool call (arguments as JSON text, a fresh id)."""
    return {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": str(obj["name"]), "arguments": json.dumps(obj.get("arguments", {}),
                                                                             ensure_ascii=False)}}


class CallStream:
    """Streamed answer text → deltas: prose as content (held back while it may be the start of a call tag),
    each call as one tool_calls delta once its closing tag has arrived."""

    def __init__(self) -> None:
        self._buffer = ""
        self._in_calls = False
        self.calls = 0

    def feed(self, text: str) -> list[Message]:
        self._buffer += text
        out: list[Message] = []
        if not self._in_calls:
            at = self._buffer.find(_TAG)
            if at < 0:
                keep = _partial_tag(self._buffer)
                ready, self._buffer = self._buffer[:len(self._buffer) - keep], self._buffer[len(self._buffer) - keep:]
                return [{"content": ready}] if ready else []
            if self._buffer[:at].strip():
                out.append({"content": self._buffer[:at].rstrip()})
            self._buffer, self._in_calls = self._buffer[at:], True
        while True:
            end = self._buffer.find("</tool_call>")
            if end < 0:
                return out
            whole = self._buffer[:end + len("</tool_call>")]
            self._buffer = self._buffer[len(whole):].lstrip()
            _, calls = split_calls(whole)
            for call in calls:
                out.append({"tool_calls": [{"index": self.calls, **call}]})
                self.calls += 1

    def finish(self) -> list[Message]:
        """What is left at the end: held-back prose, or an unfinished call as content."""
        rest, self._buffer = self._buffer, ""
        return [{"content": rest}] if rest else []


def _partial_tag(text: str) -> int:
    """How many trailing characters of `text` may begin the call tag."""
    for n in range(min(len(_TAG) - 1, len(text)), 0, -1):
        if _TAG.startswith(text[-n:]):
            return n
    return 0
