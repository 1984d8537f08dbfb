"""The client for any OpenAI-compatible server (ulm serve, llama.cpp, vLLM, Ollama, a hosted API), over httpx.

`Backend.chat(messages)` streams an answer as events: `Delta` (text), then one `Done` carrying the finish
reason, the usage (prompt, completion and cached tokens) and the timing (TTFT, tokens/s). Every failure
(refused connection, timeout, 401, 404, context overflow, overload, a broken stream) is raised as
`BackendError` whose message is one line for the user. Closing the stream early (Ctrl-C) closes the HTTP
connection, which is how the server learns to free the slot.

`count_tokens` uses the server's `POST /tokenize` (llama.cpp / ulm shape: {"content"} → {"tokens"}) and
falls back to an estimate of 1 token per 4 characters when the server has no such endpoint.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

# httpx's __init__ imports its own command-line tool (httpx._main → click, rich, pygments) when those are
# installed, which doubles its import time; cb never uses that tool. A None entry in sys.modules makes that
# one optional import fail, and httpx falls back to a stub, as it does when click is absent.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402


class BackendError(RuntimeError):
    """A failure talking to the model server; str() is one line for the user."""


@dataclass
class Delta:
    text: str


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class Done:
    finish_reason: str | None
    usage: Usage = field(default_factory=Usage)
    ttft_s: float | None = None
    total_s: float = 0.0
    usage_reported: bool = False

    @property
    def tokens_per_s(self) -> float | None:
        """Generated tokens per second after the first token."""
        if self.ttft_s is None or self.usage.completion_tokens < 2:
            return None
        span = self.total_s - self.ttft_s
        return (self.usage.completion_tokens - 1) / span if span > 0 else None


def server_root(base_url: str) -> str:
    """The server's root URL: `base_url` without a trailing /v1 (where /health and /tokenize live)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return " ".join(str(err["message"]).split())
        if isinstance(err, str):
            return " ".join(err.split())
        if isinstance(body.get("detail"), str):
            return " ".join(body["detail"].split())
    text = " ".join(resp.text.split())
    return text[:200] if text else resp.reason_phrase


class Backend:
    """One OpenAI-compatible server: `base_url` ends in /v1 (as for the OpenAI SDK)."""

    def __init__(self, base_url: str, api_key: str = "", model: str = "", timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = server_root(self.base_url)
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # certificates are loaded only for https (loading the CA bundle costs ~0.1 s per start-up)
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                  verify=self.base_url.startswith("https:"))
        self._tokenize_ok: bool | None = None
        self._models: list[dict[str, Any]] | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------------------

    def _fail(self, exc: httpx.HTTPError) -> BackendError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return BackendError(f"cannot reach the model server at {self.base_url} (is it running?)")
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(f"the model server at {self.base_url} did not answer in time "
                                f"({self._http.timeout.read:g}s; raise it with `cb config set timeout N`)")
        if isinstance(exc, httpx.RemoteProtocolError):
            return BackendError(f"the model server at {self.base_url} closed the connection mid-answer")
        return BackendError(f"HTTP error talking to {self.base_url}: {exc}")

    def _check(self, resp: httpx.Response) -> None:
        if resp.is_success:
            return
        if resp.is_stream_consumed is False:
            resp.read()
        msg = _error_message(resp)
        code = resp.status_code
        if code == 401 or code == 403:
            raise BackendError(f"the server refused the API key ({code}: {msg}); set it with CB_API_KEY "
                               "or `cb config set api_key KEY`")
        if code == 404:
            raise BackendError(f"not found at {resp.request.url} ({msg}); check base_url and model")
        if code in (429, 503):
            after = resp.headers.get("retry-after")
            hint = f"; retry in {after}s" if after else "; try again shortly"
            raise BackendError(f"the server is busy ({code}: {msg}){hint}")
        raise BackendError(f"the server answered {code}: {msg}")

    def _get(self, url: str) -> httpx.Response:
        try:
            resp = self._http.get(url)
        except httpx.HTTPError as exc:
            raise self._fail(exc) from None
        self._check(resp)
        return resp

    # --- endpoints ------------------------------------------------------------------------------------

    def health(self) -> bool:
        """True when GET /health answers 200 (False when down, loading or unreachable)."""
        try:
            return self._http.get(f"{self.root}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def models(self) -> list[dict[str, Any]]:
        """The server's models (`GET /v1/models` data entries), fetched once per Backend."""
        if self._models is None:
            try:
                data = self._get(f"{self.base_url}/models").json()
            except ValueError:
                raise BackendError(f"{self.base_url}/models did not answer JSON; is base_url an "
                                   "OpenAI-compatible API (ending in /v1)?") from None
            entries = data.get("data", []) if isinstance(data, dict) else []
            self._models = [e for e in entries if isinstance(e, dict) and "id" in e]
        return self._models

    def use_served_model(self) -> str:
        """Send the id the server itself reports (for the local server, whatever it loaded); returns it."""
        entries = self.models()
        if entries:
            self.model = str(entries[0]["id"])
        return self.model

    def context_length(self) -> int | None:
        """The served model's context window, as /v1/models reports it (ulm, vLLM, llama.cpp names)."""
        entries = self.models()
        matching = [e for e in entries if e.get("id") == self.model] or entries
        for entry in matching:
            for source in (entry, entry.get("meta") or {}):
                for key in ("context_length", "max_model_len", "n_ctx", "context_window", "n_ctx_train"):
                    if isinstance(source.get(key), int) and source[key] > 0:
                        return int(source[key])
        return None

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by the server's tokenizer; an estimate (chars / 4) when it has none."""
        if self._tokenize_ok is not False:
            try:
                resp = self._http.post(f"{self.root}/tokenize", json={"content": text, "add_special": False})
            except httpx.HTTPError as exc:
                raise self._fail(exc) from None
            tokens = _json_field(resp, "tokens") if resp.is_success else None
            if isinstance(tokens, list):
                self._tokenize_ok = True
                return len(tokens)
            if resp.status_code in (401, 403):
                self._check(resp)
            self._tokenize_ok = False
        return (len(text) + 3) // 4

    @property
    def exact_tokens(self) -> bool:
        """Whether counts come from the server's tokenizer (False: estimated)."""
        return bool(self._tokenize_ok)

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
             extra: dict[str, Any] | None = None) -> Generator[Delta | Done, None, None]:
        """Stream one answer. The generator must be closed (or exhausted) to release the connection."""
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "stream": True, "max_tokens": max_tokens,
            "temperature": temperature, "stream_options": {"include_usage": True}, **(extra or {}),
        }
        start = time.perf_counter()
        done = Done(finish_reason=None)
        try:
            with self._http.stream("POST", f"{self.base_url}/chat/completions", json=body) as resp:
                self._check(resp)
                seen = False
                for data in _sse_data(resp.iter_lines()):
                    seen = True
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise BackendError(f"the server sent a malformed stream chunk: {data[:80]!r}") from None
                    if not isinstance(chunk, dict):
                        raise BackendError(f"the server sent a malformed stream chunk: {data[:80]!r}")
                    if "error" in chunk:
                        err = chunk["error"]
                        msg = err.get("message", err) if isinstance(err, dict) else err
                        raise BackendError(f"the server stopped with an error: {' '.join(str(msg).split())}")
                    if isinstance(chunk.get("usage"), dict):
                        done.usage = _usage(chunk["usage"])
                        done.usage_reported = True
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if text:
                            if done.ttft_s is None:
                                done.ttft_s = time.perf_counter() - start
                            yield Delta(text)
                        if choice.get("finish_reason"):
                            done.finish_reason = choice["finish_reason"]
                if not seen:
                    kind = resp.headers.get("content-type", "no content type")
                    raise BackendError(f"{self.base_url}/chat/completions did not answer an event stream "
                                       f"({kind}); is base_url an OpenAI-compatible API (ending in /v1)?")
        except httpx.HTTPError as exc:
            raise self._fail(exc) from None
        done.total_s = time.perf_counter() - start
        yield done


def _json_field(resp: httpx.Response, name: str) -> Any:
    """`resp`'s JSON object's field `name`, or None when the body is not such an object."""
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def _usage(raw: dict[str, Any]) -> Usage:
    details = raw.get("prompt_tokens_details") or {}
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0),
                 int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0)


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The `data:` payloads of an SSE stream (multi-line data joined; comments and other fields skipped)."""
    buf: list[str] = []
    for line in lines:
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            buf.append(value[1:] if value.startswith(" ") else value)
    if buf:
        yield "\n".join(buf)
