"""Every error the server answers, in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

Status by type follows llama.cpp: invalid_request_error and exceed_context_size_error 400,
authentication_error 401, not_found_error 404, server_error 500, unavailable_error 503; plus 413 for an
oversized body and 429 (rate_limit_error, with Retry-After) for a full queue. FastAPI's validation errors
become 400 (never 422): the OpenAI SDK retries every 5xx, and a 422 is not what OpenAI clients expect.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = logging.getLogger("ulm.server")

STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


class APIError(Exception):
    """An error answer: status, message, OpenAI error type, the offending parameter and a code."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str | None = None,
        param: str | None = None,
        code: str | int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or STATUS_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code,
                          **self.extra}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def encoded(self) -> bytes:
        return json.dumps(self.body()).encode()


def _param(loc: tuple[Any, ...]) -> str | None:
    """`("body", "messages", 0, "role")` → "messages[0].role"; None for the body as a whole."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and not str(part).startswith(("function-", "union[", "tagged-union[")) and "[" not in str(part):
            out += ("." if out else "") + str(part)
    return out or None


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    kind = first.get("type", "")
    param = _param(tuple(first.get("loc", ())))
    if kind == "json_invalid":
        return "the request body is not valid JSON", None
    if kind == "missing" and param is None:
        return "the request body is missing; send a JSON object", None
    if kind in ("model_attributes_type", "dict_type") and param is None:
        return "the request body must be a JSON object", None
    msg = str(first.get("msg", "invalid value"))
    return (f"{param}: {msg}" if param else msg), param


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into an OpenAI-shaped error."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return APIError(400, message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        message = {404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(status, str(exc.detail))
        if isinstance(exc.detail, str) and exc.detail not in ("Not Found", "Method Not Allowed"):
            message = exc.detail
        if status == 400 and "parsing the body" in message:
            message = "the request body is not valid JSON"
        return APIError(status, message, headers=dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return APIError(500, "internal server error").response()
