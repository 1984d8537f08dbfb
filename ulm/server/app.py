"""The FastAPI app: OpenAI-compatible routes over the engine, plus health, metrics and (de)tokenize.

    GET  /health                 public; 200 ready, 503 loading (with the load's stage) or engine dead
    GET  /v1/models              the served model (id = --alias or its short name, context length, owned_by)
    POST /v1/chat/completions    chat, streamed (SSE) or whole
    POST /v1/completions         raw text or token-id prompt, streamed or whole
    POST /tokenize, /detokenize  llama.cpp-style {"content"} ↔ {"tokens"}
    GET  /metrics                Prometheus text
    POST /v1/embeddings          mean-pooled last hidden state (embeddings.py)
    GET  /props, /slots          llama.cpp's server facts and slot states (introspect.py)

With --cors-origin, Starlette's CORS middleware wraps everything (the Guard's refusals included, so a browser
can read them) and answers preflights itself; without it no CORS header is ever sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, PlainTextResponse

from ulm.engine.backend import Backend
from ulm.engine.types import Request
from ulm.guided.grammars import Grammars
from ulm.sampling import SamplingParams
from ulm.server import embeddings, errors, generation, introspect, structured
from ulm.server.errors import APIError
from ulm.server.guard import PUBLIC_PATHS, Guard
from ulm.server.logprobs import TokenBytes
from ulm.server.metrics import Metrics
from ulm.server.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    ErrorResponse,
    Health,
    ModelList,
    SamplingFields,
    TextCompletion,
    TokenizeRequest,
    TokenizeResponse,
)
from ulm.server.state import ServerState
from ulm.server.tool_calls import takes_tools, template_messages

ENDPOINTS = frozenset({"/health", "/v1/models", "/v1/chat/completions", "/v1/completions", "/tokenize",
                       "/detokenize", "/metrics", "/openapi.json", "/v1/embeddings", "/props", "/slots"})
BODY_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/v1/embeddings"})
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 429, 503)}
_STREAM_OR_JSON = {200: {"content": {"text/event-stream": {}}, "description": "JSON, or with stream: true SSE chunks"}}


def _sampling(body: SamplingFields) -> SamplingParams:
    return SamplingParams(
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        min_p=body.min_p or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        repetition_penalty=body.repetition_penalty or body.repeat_penalty or 1.0,
        seed=body.seed,
    )


def create_app(state: ServerState) -> Any:
    """The ASGI app for `state`: FastAPI wrapped in the Guard (auth, content type, body size, access log)."""
    settings = state.settings
    metrics = Metrics({
        "ulm_queue_depth": ("Requests waiting for a slot.", lambda: state.engine.queue_depth if state.engine else 0),
        "ulm_slots_busy": ("Slots running a request.", lambda: state.engine.slots_busy if state.engine else 0),
        "ulm_slots_total": ("Slots (--parallel).", lambda: settings.parallel),
        "ulm_ready": ("1 when the engine is serving.", lambda: 1 if state.status == "ok" else 0),
    }, counters={
        "ulm_engine_steps_total": ("Engine forwards run (prefill chunks and decode steps).",
                                   lambda: state.engine.steps if state.engine else 0),
    })

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state.engine is None and state.load_error is None:
            state.load_in_background()
        yield
        if state.engine is not None:
            await anyio.to_thread.run_sync(lambda: state.engine.stop(grace=0.0))  # type: ignore[union-attr]

    app = FastAPI(title="ulm serve", version="1", lifespan=lifespan,
                  description="µLM's OpenAI-compatible model server.")
    errors.install(app)

    def check_model(name: str | None) -> None:
        if name is not None and name != state.model_name:
            raise APIError(404, f"model '{name}' is not served here; this server serves '{state.model_name}'",
                           param="model", code="model_not_found")

    def max_tokens(*asked: int | None) -> int:
        wanted = next((n for n in asked if n is not None), settings.max_tokens_cap)
        return min(wanted, settings.max_tokens_cap)

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> JSONResponse:
        status = state.status
        body: dict[str, Any] = {"status": status}
        if status == "error":
            body["error"] = state.load_error or (state.engine.error if state.engine else None) or "shutting down"
        stage = state.loading_stage if status == "loading" else None
        if stage is not None:
            body.update(stage=stage.name, progress=stage.fraction, amount=stage.amount)
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    @app.get("/v1/models", response_model=ModelList, responses=_ERRORS)
    async def models() -> dict[str, Any]:
        _, engine = state.ready()
        card = {"id": state.model_name, "object": "model", "created": state.created, "owned_by": "ulm",
                "context_length": engine.n_ctx, "max_model_len": engine.n_ctx}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses={**_ERRORS, **_STREAM_OR_JSON})
    async def chat_completions(body: ChatCompletionRequest, request: HTTPRequest) -> Any:
        backend, engine = state.ready()
        check_model(body.model)
        choice = structured.tool_choice(body)
        tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools and choice else None
        native = takes_tools(backend.tokenizer)
        messages = template_messages([_message(m) for m in body.messages], tools, native)
        try:
            prompt = await anyio.to_thread.run_sync(backend.chat_prompt, messages, tools if native else None)
        except Exception as exc:  # the checkpoint's template refusing these messages (e.g. roles out of order)
            raise APIError(400, f"the chat template rejected the messages: {exc}", param="messages") from None
        constraint = await anyio.to_thread.run_sync(structured.compile_constraint, state.grammars, body, choice)
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        gen = Request(prompt, max_tokens(body.max_completion_tokens, body.max_tokens), _sampling(body),
                      body.stops(), constraint=constraint,
                      logprobs=(body.top_logprobs or 0) if body.logprobs else None)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        job = generation.start("chat", state.model_name, engine, metrics, gen, include_usage,
                               tool_calls=choice is not None, piece=token_bytes(backend, state.grammars))
        return await generation.answer(job, request, bool(body.stream))

    @app.post("/v1/completions", response_model=TextCompletion, responses={**_ERRORS, **_STREAM_OR_JSON})
    async def completions(body: CompletionRequest, request: HTTPRequest) -> Any:
        backend, engine = state.ready()
        check_model(body.model)
        if isinstance(body.prompt, str):
            prompt = await anyio.to_thread.run_sync(lambda: backend.encode(body.prompt, add_special=True))
        else:  # token ids: the engine's check refuses ids outside the vocabulary
            prompt = list(body.prompt)
        constraint = await anyio.to_thread.run_sync(structured.compile_constraint, state.grammars, body)
        gen = Request(prompt, max_tokens(body.max_completion_tokens, body.max_tokens), _sampling(body),
                      body.stops(), constraint=constraint, logprobs=body.logprobs)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        job = generation.start("text", state.model_name, engine, metrics, gen, include_usage,
                               piece=token_bytes(backend, state.grammars))
        return await generation.answer(job, request, bool(body.stream))

    @app.post("/tokenize", response_model=TokenizeResponse, responses=_ERRORS)
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        backend, _ = state.ready()
        return {"tokens": await anyio.to_thread.run_sync(lambda: backend.encode(body.content, body.add_special))}

    @app.post("/detokenize", response_model=DetokenizeResponse, responses=_ERRORS)
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        backend, _ = state.ready()
        ids = _in_vocab(body.tokens, backend.vocab_size, "tokens")
        return {"content": await anyio.to_thread.run_sync(backend.decode, ids)}

    @app.get("/metrics", response_class=PlainTextResponse, responses={401: {"model": ErrorResponse}})
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            _document_errors_and_auth(schema, settings.api_key is not None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(introspect.router(state))
    app.include_router(embeddings.router(state, check_model))
    guarded = Guard(app, settings.api_key, settings.max_body, metrics.count_request, ENDPOINTS, BODY_PATHS)
    if not settings.cors_origins:
        return guarded
    return CORSMiddleware(guarded, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "OPTIONS"],
                          allow_headers=["Authorization", "Content-Type", "X-Api-Key"], max_age=600)


def token_bytes(backend: Backend, grammars: Grammars | None) -> TokenBytes:
    """A token's exact bytes (llguidance's tokenizer knows them; else the tokenizer's decoding of it alone)."""
    if grammars is not None:
        return lambda t: bytes(grammars.tokenizer.decode_bytes([t]))
    return lambda t: backend.decode([t]).encode()


def _message(m: ChatMessage) -> dict[str, Any]:
    """A request message as the chat template and ulm.server.tool_calls take it (content as text)."""
    out: dict[str, Any] = {"role": m.role, "content": m.text()}
    if m.tool_calls:
        out["tool_calls"] = [c.model_dump() for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _in_vocab(ids: list[int], vocab_size: int, param: str) -> list[int]:
    bad = [t for t in ids if t >= vocab_size]
    if bad:
        raise APIError(400, f"token id {bad[0]} is out of vocabulary (size {vocab_size})", param=param)
    return ids


def _document_errors_and_auth(schema: dict[str, Any], with_key: bool) -> None:
    """400 (not 422) for validation errors, and the bearer key on every non-public operation."""
    if with_key:
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer"}
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, ops in schema.get("paths", {}).items():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if with_key and path not in PUBLIC_PATHS:
                op["security"] = [{"bearer": []}]
                responses.setdefault("401", {"description": "invalid or missing API key"})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and path != "/health":
                    response["content"] = error_content  # errors are JSON even where success is text
    schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
