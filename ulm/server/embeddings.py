"""POST /v1/embeddings, OpenAI-shaped: one vector per input, the mean over its tokens of the model's last hidden
state (the final norm's output, before the LM head), L2-normalised (as OpenAI's and llama.cpp's vectors are),
fp32. A causal LM is no trained embedding model: these vectors carry what its hidden states carry.

Input: a text, a list of texts, a list of token ids or a list of those (texts are tokenized without special
tokens, as /tokenize does by default). Each input runs as its own forward, in the engine's thread between its
steps (`Engine.call`), so running generations keep streaming meanwhile. An input of n_ctx tokens or more is
a 400 exceed_context_size_error, as a prompt is. `encoding_format: "base64"` gives each vector as its
little-endian float32 bytes, base64-encoded.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter

from ulm.engine.backend import Backend
from ulm.engine.types import EngineStoppedError
from ulm.server.errors import APIError
from ulm.server.schemas import EmbeddingList, EmbeddingRequest
from ulm.server.state import ServerState


def _inputs(body: EmbeddingRequest, backend: Backend) -> list[list[int]]:
    """Each input's token ids."""
    given = body.input
    if isinstance(given, str):
        given = [given]
    if given and isinstance(given[0], int):
        given = [given]  # one list of token ids
    out: list[list[int]] = []
    for i, item in enumerate(given):
        ids = backend.encode(item) if isinstance(item, str) else list(item)
        if not ids:
            raise APIError(400, f"input[{i}] has no tokens", param="input")
        bad = next((t for t in ids if t >= backend.vocab_size), None)
        if bad is not None:
            raise APIError(400, f"input[{i}]: token id {bad} is out of vocabulary (size {backend.vocab_size})",
                           param="input")
        out.append(ids)
    return out


def _encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def router(state: ServerState, check_model: Callable[[str | None], None]) -> APIRouter:
    """The /v1/embeddings route over `state`; `check_model(name)` refuses a model this server does not serve."""
    routes = APIRouter()

    @routes.post("/v1/embeddings", response_model=EmbeddingList, responses={400: {}, 401: {}, 404: {}, 503: {}})
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        backend, engine = state.ready()
        check_model(body.model)
        inputs = await anyio.to_thread.run_sync(_inputs, body, backend)
        for i, ids in enumerate(inputs):
            if len(ids) >= engine.n_ctx:
                raise APIError(400, f"input[{i}] has {len(ids)} tokens, over the context of {engine.n_ctx}",
                               type="exceed_context_size_error", code="context_length_exceeded", param="input")
        data = []
        for i, ids in enumerate(inputs):
            try:
                vector = await asyncio.wrap_future(engine.call(lambda ids=ids: backend.embed(ids).tolist()))
            except EngineStoppedError as exc:
                raise APIError(503, str(exc), headers={"Retry-After": "1"}) from None
            data.append({"object": "embedding", "index": i, "embedding": _encode(vector, body.encoding_format)})
        n = sum(len(ids) for ids in inputs)
        return {"object": "list", "data": data, "model": state.model_name,
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    return routes
