"""Request and response bodies of the OpenAI-compatible endpoints, as pydantic models.

Requests are validated strictly (no "10" for an int, no true for a number) so that a bad field is a
400 naming it, and so is an unknown field: nothing a client asks for is dropped silently (a field this
server does not implement, such as `logit_bias`, is refused by name rather than ignored).
These models also produce the /openapi.json that schemathesis and clients read.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

Temperature = Annotated[float, Field(strict=True, ge=0.0, le=2.0, allow_inf_nan=False)]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
Penalty = Annotated[float, Field(strict=True, ge=-2.0, le=2.0, allow_inf_nan=False)]
Seed = Annotated[int, Field(strict=True, ge=-(2**63), le=2**64 - 1)]
MaxTokens = Annotated[int, Field(strict=True, ge=1)]
TopK = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]
StopText = Annotated[str, Field(strict=True, min_length=1, max_length=256)]
TokenId = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]
RepetitionPenalty = Annotated[float, Field(strict=True, ge=0.01, le=100.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: StrictStr


# -- constrained decoding, tools, logprobs (ulm.server.structured, ulm.server.tool_calls) ----------------


class JsonSchemaFormat(_Strict):
    name: Annotated[str, Field(strict=True, min_length=1, max_length=64)]
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="The JSON Schema; none = any JSON.")
    description: StrictStr | None = None
    strict: StrictBool | None = Field(None, description="Always enforced: the output matches the schema.")


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="llama.cpp's spelling of "
                                           "json_schema.schema, with type json_object.")


class FunctionDef(_Strict):
    name: Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments object.")
    strict: StrictBool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class FunctionName(_Strict):
    name: StrictStr


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


class FunctionCall(_Strict):
    name: StrictStr
    arguments: StrictStr


class ToolCall(_Strict):
    id: StrictStr
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant turn's calls.")
    tool_call_id: StrictStr | None = Field(None, description="The call a tool message answers.")

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: StrictBool = False


class SamplingFields(_Strict):
    """Fields shared by chat and text completions."""

    model: StrictStr | None = Field(None, description="The served model's id (see /v1/models); may be left out.")
    max_tokens: MaxTokens | None = Field(None, description="Clamped to the server's --max-tokens-cap.")
    max_completion_tokens: MaxTokens | None = Field(None, description="Alias of max_tokens; wins when both are set.")
    temperature: Temperature | None = Field(None, description="0 = greedy. Default 1.")
    top_p: Annotated[float, Field(strict=True, gt=0.0, le=1.0, allow_inf_nan=False)] | None = None
    top_k: TopK | None = Field(None, description="0 = off.")
    min_p: Probability | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repetition_penalty: RepetitionPenalty | None = Field(
        None, description="HF's: a generated token's logit is divided by it (multiplied when negative). 1 = off.")
    repeat_penalty: RepetitionPenalty | None = Field(None, description="llama.cpp's name of repetition_penalty.")
    seed: Seed | None = None
    stop: StopText | Annotated[list[StopText], Field(max_length=16)] | None = None
    n: Annotated[int, Field(strict=True, ge=1, le=1)] | None = Field(None, description="Only 1 is supported.")
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = Field(None, description="An end-user id; accepted and not used.")
    grammar: Annotated[str, Field(strict=True, min_length=1)] | None = Field(
        None, description="Constrain the output: Lark (llguidance's dialect) or GBNF (rules written ::=).")
    response_format: ResponseFormat | None = Field(None, description="text, json_object or json_schema.")

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="auto (the default with tools), required, none, or a named function.")
    parallel_tool_calls: StrictBool | None = Field(None, description="false: at most one call. Default true.")
    logprobs: StrictBool | None = Field(None, description="Return each output token's log probability.")
    top_logprobs: Annotated[int, Field(strict=True, ge=0, le=20)] | None = Field(
        None, description="And that many most likely alternatives (needs logprobs: true).")

    @field_validator("messages")
    @classmethod
    def _roles(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        for i, message in enumerate(messages):
            if message.content is None and message.role != "assistant":
                raise ValueError(f"messages[{i}]: content is required for role '{message.role}'")
            if message.tool_calls is not None and message.role != "assistant":
                raise ValueError(f"messages[{i}]: only assistant messages have tool_calls")
            if message.tool_call_id is not None and message.role != "tool":
                raise ValueError(f"messages[{i}]: only tool messages have tool_call_id")
        return messages


class CompletionRequest(SamplingFields):
    prompt: StrictStr | Annotated[list[TokenId], Field(min_length=1)] = Field(
        ..., description="Text, or a list of token ids."
    )
    logprobs: Annotated[int, Field(strict=True, ge=0, le=20)] | None = Field(
        None, description="Return each token's log probability and that many most likely alternatives.")


class TokenizeRequest(_Strict):
    content: StrictStr
    add_special: StrictBool = False


class DetokenizeRequest(_Strict):
    tokens: list[TokenId]


class EmbeddingRequest(_Strict):
    input: (Annotated[StrictStr, Field(min_length=1)]
            | Annotated[list[Annotated[StrictStr, Field(min_length=1)]], Field(min_length=1, max_length=2048)]
            | Annotated[list[TokenId], Field(min_length=1)]
            | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1, max_length=2048)]
            ) = Field(..., description="A text, a list of texts, a list of token ids, or a list of those.")
    model: StrictStr | None = Field(None, description="The served model's id (see /v1/models); may be left out.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: each vector as little-endian float32 bytes, base64-encoded.")
    user: StrictStr | None = None


# -- responses (documentation for /openapi.json; handlers build plain dicts of these shapes) ----------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: ChatLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    timings: dict[str, Any]


class TextLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: str
    logprobs: TextLogprobs | None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage
    timings: dict[str, Any]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    context_length: int
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class TokenizeResponse(BaseModel):
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    content: str


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Health(BaseModel):
    status: str  # "ok", "loading" or "error"
    error: str | None = None
    stage: str | None = None  # while loading: the step under way ("repacking qwen2.5-coder-1.5b")
    progress: float | None = None  # its fraction done, 0..1, where it is counted
    amount: str | None = None  # how far, for people ("420/1117 MB")


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
