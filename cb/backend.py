"""The client for any OpenAI-compatible server (ulm serve, llama.cpp, vLLM, Ollama, a hosted API), over the
stdlib's http.client, one kept-alive connection per Backend (httpx and httpcore cost a one-shot `cb` ~40 ms
more to import).

`Backend.chat(messages)` streams an answer as events: `Delta` (text), then one `Done` carrying the finish
reason, the usage (prompt, completion and cached tokens), the timing (TTFT, tokens/s) and the tool calls
the answer made (their streamed deltas assembled: OpenAI's `tool_calls` shape). Every failure
(refused connection, timeout, 401, 404, context overflow, overload, a broken stream) is raised as
`BackendError` whose message is one line for the user; a context overflow is a `ContextOverflow`, with the
server's counts when it gave them (cb.chat cuts the prompt further and asks again). Closing the stream
early (Ctrl-C) closes the HTTP connection, which is how the server learns to free the slot. Any other error
answer is a `RequestError` carrying the status and the server's message (cb.exchange reads it to learn that a
server refuses a field it sent).

`Backend.features()` says, once per Backend, what the server offers beyond plain chat (`ServerFeatures`):
`ulm serve` is known by `"owned_by": "ulm"` in its /v1/models entries and says `"grammar": true` in
`GET /props` when it constrains decoding; llama.cpp (`"owned_by": "llamacpp"`) says whether its chat template
takes tool calls in /props' `chat_template_caps`; OpenAI's own API (`"owned_by": "openai"` or `"system"`)
takes tool calls. Anything else is a plain chat server.

Timeouts: connecting waits at most min(timeout, 10) s; every later read waits at most `timeout` s (so a
stream may run longer, as long as chunks keep coming). Proxies: the usual environment variables (HTTPS_PROXY,
HTTP_PROXY, ALL_PROXY, NO_PROXY) are honoured, as curl and the OpenAI SDK do.

`count_tokens` uses the server's `POST /tokenize` (llama.cpp / ulm shape: {"content"} → {"tokens"}) and
falls back to an estimate of 1 token per 4 characters when the server has no such endpoint.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

CONNECT_TIMEOUT_S = 10.0


class BackendError(RuntimeError):
    """A failure talking to the model server; str() is one line for the user."""


class RequestError(BackendError):
    """The server refused the request (a status other than the ones with their own message): `status`, and
    `detail`, the server's own message."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class ContextOverflow(BackendError):
    """The server refused the prompt as longer than its context: `n_prompt_tokens` (what it counted) and
    `n_ctx` (its context) when it said so.

    Recognised shapes: llama.cpp's error type `exceed_context_size_error` with `n_prompt_tokens` and `n_ctx`
    fields (ulm serve sends those and OpenAI's code as well), and OpenAI's code `context_length_exceeded`,
    whose numbers are in the message ("maximum context length is 4096 tokens. However, your messages
    resulted in 5000 tokens").
    """

    def __init__(self, message: str, n_prompt_tokens: int | None = None, n_ctx: int | None = None) -> None:
        super().__init__(message)
        self.n_prompt_tokens = n_prompt_tokens
        self.n_ctx = n_ctx


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
    # the answer's tool calls: [{"id", "type", "function": {"name", "arguments"}}]
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        """Generated tokens per second after the first token."""
        if self.ttft_s is None or self.usage.completion_tokens < 2:
            return None
        span = self.total_s - self.ttft_s
        return (self.usage.completion_tokens - 1) / span if span > 0 else None


@dataclass(frozen=True)
class ServerFeatures:
    """What a server offers beyond plain chat (see the module docstring): `server` is "ulm", "llamacpp",
    "openai" or "" (unknown); `grammar`: it takes a `grammar` field (Lark, llguidance's dialect); `tools`: it
    takes OpenAI `tools` and answers with `tool_calls`."""

    server: str = ""
    grammar: bool = False
    tools: bool = False


OPENAI_OWNERS = frozenset({"openai", "system", "openai-internal"})


def server_root(base_url: str) -> str:
    """The server's root URL: `base_url` without a trailing /v1 (where /health and /tokenize live)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


@dataclass
class Reply:
    """A whole (non-streamed) HTTP response."""

    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)

    def json_field(self, name: str) -> Any:
        """The JSON object's field `name`, or None when the body is not such an object."""
        try:
            body = self.json()
        except ValueError:
            return None
        return body.get(name) if isinstance(body, dict) else None


def _load_stage(reply: Reply) -> str:
    """A loading server's step as one line: its stage, percent done and amount where it gives them."""
    stage, fraction, amount = (reply.json_field(k) for k in ("stage", "progress", "amount"))
    if not isinstance(stage, str) or not stage:
        return ""
    words = [stage]
    if isinstance(fraction, (int, float)) and 0 <= fraction <= 1:
        words.append(f"{fraction:.0%}")
    if isinstance(amount, str) and amount:
        words.append(f"({amount})")
    return " ".join(" ".join(words).split())


_MESSAGE_NUMBERS = {
    "n_ctx": re.compile(r"maximum context length is (\d+)"),
    "n_prompt_tokens": re.compile(r"messages resulted in (\d+) tokens|(\d+) (?:tokens )?in the messages"),
}


def _overflow(reply: Reply, message: str) -> ContextOverflow | None:
    """The ContextOverflow this error answer stands for, or None when it is another error."""
    err = reply.json_field("error")
    if not isinstance(err, dict) or not (err.get("type") == "exceed_context_size_error"
                                         or err.get("code") == "context_length_exceeded"):
        return None

    def number(name: str) -> int | None:  # the error's field, else the number its message gives
        if isinstance(err.get(name), int):
            return int(err[name])
        found = _MESSAGE_NUMBERS[name].search(str(err.get("message", "")))
        return int(next(group for group in found.groups() if group)) if found else None

    return ContextOverflow(f"the server answered {reply.status}: {message}", number("n_prompt_tokens"),
                           number("n_ctx"))


def _error_message(reply: Reply) -> str:
    try:
        body = reply.json()
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
    text = " ".join(reply.body.decode("utf-8", errors="replace").split())
    return text[:200] if text else reply.reason


class Backend:
    """One OpenAI-compatible server: `base_url` ends in /v1 (as for the OpenAI SDK)."""

    def __init__(self, base_url: str, api_key: str = "", model: str = "", timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = server_root(self.base_url)
        self.model = model
        self.timeout = timeout
        self._headers = {"User-Agent": "cb", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self._conn: http.client.HTTPConnection | None = None
        self._via_proxy = False  # plain HTTP through a proxy: requests name the absolute URL
        self._tokenize_ok: bool | None = None
        self._models: list[dict[str, Any]] | None = None
        self._features: ServerFeatures | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------------------

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        """A new connection to the server (the old one closed), or BackendError saying why not."""
        self.close()
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"base_url must start with http:// or https://, not {self.base_url!r}")
        https = parts.scheme == "https"
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
        proxy = _proxy_for(parts.scheme, parts.hostname)
        try:
            host, port = parts.hostname, parts.port or (443 if https else 80)
            self._via_proxy = proxy is not None and not https
            if proxy is None:
                conn = kind(host, port, timeout=min(timeout, CONNECT_TIMEOUT_S))
            else:
                conn = kind(proxy.hostname or "", proxy.port or 80, timeout=min(timeout, CONNECT_TIMEOUT_S))
                auth = _proxy_auth(proxy)
                if https:
                    conn.set_tunnel(host, port, headers=auth)
                else:
                    self._headers.update(auth)
            conn.connect()
        except ssl.SSLError as exc:
            raise BackendError(f"TLS failed with the model server at {self.base_url}: "
                               f"{exc.reason or exc}") from None
        except (OSError, ValueError) as exc:
            if proxy is not None:
                raise BackendError(f"cannot reach the model server at {self.base_url} through the proxy "
                                   f"{proxy.hostname}:{proxy.port or 80} ({exc})") from None
            raise BackendError(f"cannot reach the model server at {self.base_url} (is it running?)") from None
        self._conn = conn
        return conn

    def _fail(self, exc: Exception) -> BackendError:
        """The one-line error for a failure after connecting (the connection is closed)."""
        self.close()
        if isinstance(exc, TimeoutError):
            return BackendError(f"the model server at {self.base_url} did not answer in time "
                                f"({self.timeout:g}s; raise it with `cb config set timeout N`)")
        if isinstance(exc, ConnectionError | http.client.IncompleteRead | http.client.BadStatusLine):
            return BackendError(f"the model server at {self.base_url} closed the connection mid-answer")
        return BackendError(f"HTTP error talking to {self.base_url}: {exc}")

    def _open(self, method: str, url: str, body: dict[str, Any] | None = None,
              timeout: float | None = None) -> http.client.HTTPResponse:
        """Send a request on the kept-alive connection; the response comes back with its headers read.

        A connection the server closed while idle fails on its next request; that request is sent again,
        once, on a new connection.
        """
        wait = self.timeout if timeout is None else timeout
        data = None
        content = {}
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
            content = {"Content-Type": "application/json"}
        reused = self._conn is not None and self._conn.sock is not None
        conn = self._conn if reused and self._conn is not None else self._connect(wait)
        parts = urlsplit(url)
        target = url if self._via_proxy else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {**self._headers, **content}
        while True:
            try:
                assert conn.sock is not None
                conn.sock.settimeout(wait)
                conn.request(method, target, body=data, headers=headers)
                return conn.getresponse()
            except (ConnectionError, http.client.BadStatusLine) as exc:
                if not reused:
                    raise self._fail(exc) from None
                reused = False
                conn = self._connect(wait)
            except (OSError, http.client.HTTPException) as exc:
                raise self._fail(exc) from None

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None,
                 timeout: float | None = None) -> Reply:
        return self._read(self._open(method, url, body, timeout))

    def _read(self, resp: http.client.HTTPResponse) -> Reply:
        """The rest of `resp`, whole."""
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._fail(exc) from None
        return Reply(resp.status, resp.reason, resp.headers, data)

    def _check(self, reply: Reply, url: str) -> None:
        if reply.ok:
            return
        msg = _error_message(reply)
        code = reply.status
        if code == 401 or code == 403:
            raise BackendError(f"the server refused the API key ({code}: {msg}); set it with CB_API_KEY "
                               "or `cb config set api_key KEY`")
        if code == 404:
            raise BackendError(f"not found at {url} ({msg}); check base_url and model")
        if code in (429, 503):
            after = reply.headers.get("retry-after")
            hint = f"; retry in {after}s" if after else "; try again shortly"
            raise BackendError(f"the server is busy ({code}: {msg}){hint}")
        raise _overflow(reply, msg) or RequestError(f"the server answered {code}: {msg}", code, msg)

    def _lines(self, resp: http.client.HTTPResponse) -> Iterator[str]:
        """The response body's lines as they arrive, without their line ends."""
        while True:
            try:
                raw = resp.readline()
            except (OSError, http.client.HTTPException) as exc:
                raise self._fail(exc) from None
            if not raw:
                return
            yield raw.decode("utf-8", errors="replace").rstrip("\r\n")

    # --- endpoints ------------------------------------------------------------------------------------

    def probe(self, timeout: float = 2.0) -> tuple[str, str]:
        """GET <root>/health → ("ok" | "loading" | "error" | "down", what the server says: its error message,
        or while loading the step under way as µLM's server reports it, e.g. "repacking qwen2.5-coder-1.5b
        42% (470/1117 MB)"; "" when it says nothing)."""
        try:
            reply = self._request("GET", f"{self.root}/health", timeout=timeout)
        except BackendError:
            return "down", ""
        if reply.ok:
            return "ok", ""
        if str(reply.json_field("status") or "loading") == "error":
            return "error", " ".join(str(reply.json_field("error") or "").split())
        return "loading", _load_stage(reply)

    def health(self) -> bool:
        """True when GET /health answers 200 (False when down, loading or unreachable)."""
        return self.probe()[0] == "ok"

    def models(self) -> list[dict[str, Any]]:
        """The server's models (`GET /v1/models` data entries), fetched once per Backend."""
        if self._models is None:
            url = f"{self.base_url}/models"
            reply = self._request("GET", url)
            self._check(reply, url)
            try:
                data = reply.json()
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

    def features(self) -> ServerFeatures:
        """What the server offers beyond plain chat, asked once per Backend (a server that cannot say offers
        nothing more)."""
        if self._features is None:
            try:
                self._features = self._detect_features()
            except BackendError:
                self._features = ServerFeatures()
        return self._features

    def assume_features(self, features: ServerFeatures) -> None:
        """Take `features` as known (cb.chat keeps the local server's, per server start)."""
        self._features = features

    def _detect_features(self) -> ServerFeatures:
        owners = {str(entry.get("owned_by", "")) for entry in self.models()}
        if "ulm" in owners:
            return ServerFeatures("ulm", grammar=self._props().get("grammar") is True)
        if "llamacpp" in owners:
            caps = self._props().get("chat_template_caps")
            return ServerFeatures("llamacpp", tools=isinstance(caps, dict) and caps.get("supports_tool_calls") is True)
        if owners & OPENAI_OWNERS:
            return ServerFeatures("openai", tools=True)
        return ServerFeatures()

    def _props(self) -> dict[str, Any]:
        """GET <root>/props (llama.cpp's and ulm's server facts); {} when the server has none."""
        reply = self._request("GET", f"{self.root}/props")
        try:
            data = reply.json() if reply.ok else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by the server's tokenizer; an estimate (chars / 4) when it has none."""
        if self._tokenize_ok is not False:
            url = f"{self.root}/tokenize"
            reply = self._request("POST", url, {"content": text, "add_special": False})
            tokens = reply.json_field("tokens") if reply.ok else None
            if isinstance(tokens, list):
                self._tokenize_ok = True
                return len(tokens)
            if reply.status in (401, 403):
                self._check(reply, url)
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
        url = f"{self.base_url}/chat/completions"
        start = time.perf_counter()
        done = Done(finish_reason=None)
        calls: dict[int, dict[str, Any]] = {}
        resp = self._open("POST", url, body)
        try:
            if not 200 <= resp.status < 300:
                self._check(self._read(resp), url)
            seen = False
            for data in _sse_data(self._lines(resp)):
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
                    pieces = delta.get("tool_calls")
                    if (text or pieces) and done.ttft_s is None:
                        done.ttft_s = time.perf_counter() - start
                    if text:
                        yield Delta(text)
                    if isinstance(pieces, list):
                        _add_tool_call_deltas(calls, pieces)
                    if choice.get("finish_reason"):
                        done.finish_reason = choice["finish_reason"]
            if not seen:
                kind = resp.headers.get("content-type", "no content type")
                raise BackendError(f"{self.base_url}/chat/completions did not answer an event stream "
                                   f"({kind}); is base_url an OpenAI-compatible API (ending in /v1)?")
        finally:
            # the rest of the stream is not read: closing is what tells the server to stop (and free the slot)
            resp.close()
            self.close()
        done.total_s = time.perf_counter() - start
        done.tool_calls = [calls[i] for i in sorted(calls)]
        yield done


def _add_tool_call_deltas(calls: dict[int, dict[str, Any]], pieces: list[Any]) -> None:
    """Fold one chunk's `tool_calls` deltas into `calls` (by index): the id and name as they come, the
    arguments concatenated (a server that sends them as an object sends them whole)."""
    for piece in pieces:
        if not isinstance(piece, dict):
            continue
        index = piece.get("index")
        index = index if isinstance(index, int) else len(calls)
        call = calls.setdefault(index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        if isinstance(piece.get("id"), str):
            call["id"] = piece["id"]
        function = piece.get("function")
        if not isinstance(function, dict):
            continue
        if isinstance(function.get("name"), str):
            call["function"]["name"] += function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call["function"]["arguments"] += arguments
        elif isinstance(arguments, dict):
            call["function"]["arguments"] = json.dumps(arguments)


def _proxy_for(scheme: str, host: str) -> SplitResult | None:
    """The proxy the environment names for this scheme and host, if any (NO_PROXY honoured)."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request  # only when a proxy variable is set: its import costs a one-shot cb ~5 ms

    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return urlsplit(url if "://" in url else f"http://{url}")


def _proxy_auth(proxy: SplitResult) -> dict[str, str]:
    """The Proxy-Authorization header for a proxy URL with user:password, else none."""
    if proxy.username is None:
        return {}
    pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}


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
