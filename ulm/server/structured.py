"""What a request's answer must look like, compiled into the one `Constraint` its row decodes under.

Three fields ask for structure, and a request may use one of them (two together are a 400 naming the
second): `grammar` (Lark or GBNF, both endpoints), `response_format` (json_object: any JSON object, or the
schema given as llama.cpp's `response_format.schema`; json_schema: `response_format.json_schema.schema`;
text: no constraint), and on chat `tools` with `tool_choice` other than "none" (`ulm.server.tool_calls`).

- `tool_choice(body)`: the effective choice ("auto" by default when tools are given; None when no tools are
  in play), or a 400 for a choice without tools or a named function that is not among them.
- `compile_constraint(grammars, body, choice)`: the Constraint (None for none asked), compiled for this
  request (run it in a worker thread: llguidance takes milliseconds and drops the GIL); 400s for a grammar
  llguidance refuses (its message names the line and what it expected) and, on a server without
  llguidance, for any structure asked for.
"""

from __future__ import annotations

from typing import Any

from ulm.guided.constraint import Constraint
from ulm.guided.grammars import GrammarError, Grammars
from ulm.server.errors import APIError
from ulm.server.schemas import ChatCompletionRequest, SamplingFields
from ulm.server.tool_calls import tool_grammar

Choice = str | dict[str, Any]
MAX_ERROR_LINES = 6  # llguidance's messages show the grammar around the error; the first lines say it


def tool_choice(body: ChatCompletionRequest) -> Choice | None:
    """The effective tool_choice of a chat request: None when no tools are offered (or "none")."""
    choice = body.tool_choice
    if not body.tools:
        if choice is not None and choice != "none":
            raise APIError(400, "tool_choice needs tools: give the functions in tools", param="tool_choice")
        return None
    if choice is None:
        return "auto"
    if choice == "none":
        return None
    if isinstance(choice, str):
        return choice
    names = [t.function.name for t in body.tools]
    if choice.function.name not in names:
        raise APIError(400, f"tool_choice names '{choice.function.name}', which is not among the tools "
                       f"({', '.join(names)})", param="tool_choice.function.name")
    return choice.model_dump()


def compile_constraint(grammars: Grammars | None, body: SamplingFields,
                       choice: Choice | None = None) -> Constraint | None:
    asked = [name for name, wanted in (
        ("grammar", body.grammar is not None),
        ("response_format", body.response_format is not None and body.response_format.type != "text"),
        ("tools", choice is not None)) if wanted]
    if not asked:
        return None
    if len(asked) > 1:
        raise APIError(400, f"{asked[0]} and {asked[1]} cannot be combined: give one of them", param=asked[1])
    param = asked[0]
    if grammars is None:
        raise APIError(400, f"{param}: this server cannot constrain decoding (llguidance is not installed: "
                       "pip install llguidance)", param=param)
    try:
        if param == "grammar":
            assert body.grammar is not None
            return grammars.grammar(body.grammar)
        if param == "response_format":
            return grammars.json_schema(_schema(body))
        assert isinstance(body, ChatCompletionRequest) and body.tools is not None and choice is not None
        tools = [t.model_dump(exclude_none=True) for t in body.tools]
        tags = grammars.special_token("<tool_call>"), grammars.special_token("</tool_call>")
        special = (tags[0], tags[1]) if tags[0] is not None and tags[1] is not None else None
        return grammars.lark(tool_grammar(tools, choice, body.parallel_tool_calls is not False, special))
    except GrammarError as exc:
        first = "\n".join(str(exc).splitlines()[:MAX_ERROR_LINES])
        raise APIError(400, f"{param}: llguidance refused it: {first}", param=param) from None


def _schema(body: SamplingFields) -> dict[str, Any] | None:
    fmt = body.response_format
    assert fmt is not None
    if fmt.type == "json_object":
        return fmt.schema_
    if fmt.json_schema is None:
        raise APIError(400, "response_format.json_schema is required with type json_schema",
                       param="response_format.json_schema")
    return fmt.json_schema.schema_
