"""Request and response bodies of the OpenAI-compatible endpoints, as pydantic models.

Requests are validated strictly (no "10" for an int, no true for a number) so that a bad field is a
400 naming it, and unknown fields are ignored, as OpenAI clients send many this server does not use.
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Strict):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

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
    temperature: Temperature | None = Field(None, description="0 = greedy. Default 1.")
    top_p: Annotated[float, Field(strict=True, gt=0.0, le=1.0, allow_inf_nan=False)] | None = None
    top_k: TopK | None = Field(None, description="0 = off.")
    min_p: Probability | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: Seed | None = None
    stop: StopText | Annotated[list[StopText], Field(max_length=16)] | None = None
    n: Annotated[int, Field(strict=True, ge=1, le=1)] | None = Field(None, description="Only 1 is supported.")
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: MaxTokens | None = Field(None, description="Alias of max_tokens; wins when both are set.")

    @field_validator("messages")
    @classmethod
    def _roles(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        for i, message in enumerate(messages):
            if message.content is None and message.role != "assistant":
                raise ValueError(f"messages[{i}]: content is required for role '{message.role}'")
        return messages


class CompletionRequest(SamplingFields):
    prompt: StrictStr | Annotated[list[TokenId], Field(min_length=1)] = Field(
        ..., description="Text, or a list of token ids."
    )


class TokenizeRequest(_Strict):
    content: StrictStr
    add_special: StrictBool = False


class DetokenizeRequest(_Strict):
    tokens: list[TokenId]


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
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    timings: dict[str, Any]


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: str
    logprobs: None = None


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
