"""`ulm serve`: the OpenAI-compatible model server (see ulm/server/)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Annotated

import typer

from ulm.server.defaults import (
    DEFAULT_CTX,
    DEFAULT_LOG_BACKUPS,
    DEFAULT_LOG_MAX_BYTES,
    DEFAULT_MAX_TOKENS_CAP,
    DEFAULT_PARALLEL,
    DEFAULT_PORT,
)

# libgomp's busy-wait before an idle thread sleeps (its default: 300000). Measured with `ulm bench serve`
# (4 paired runs, embedded model, fast mode, 2 cores): 4 clients / 1 client 2.35-2.63× by default,
# 2.58-2.77× at 20000; one client's tokens/s the same.
SERVE_SPINCOUNT = "20000"


def tune_openmp(env: MutableMapping[str, str]) -> None:
    """Shorten OpenMP's busy-wait where the user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT.

    OMP_WAIT_POLICY is left to the user: OpenMP's default (spinning waits) served the embedded model at 65 tok/s
    to one client vs 24 with PASSIVE on an idle 2-core box, but PASSIVE wins when other processes compete for
    the cores (the test suite sets it for its servers). A shorter spin keeps both: between the decode step's
    parallel regions the waits are µs and stay spins, but while the engine thread runs Python between steps
    the idle OpenMP thread sleeps instead of holding a core that the HTTP loop and the clients need."""
    if "OMP_WAIT_POLICY" not in env:
        env.setdefault("GOMP_SPINCOUNT", SERVE_SPINCOUNT)


def serve(
    model: str = typer.Option(None, "--model", "-m", help="Model: a short name (see `ulm models`), a .gguf file "
                              "or an HF directory. Default: the embedded smollm2-135m."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on. Anything but loopback needs --api-key."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to listen on; 0 picks a free one (printed at start-up)."),
    api_key: str = typer.Option(None, "--api-key", envvar="ULM_API_KEY", show_envvar=True,
                                help="Require 'Authorization: Bearer KEY' on every endpoint but /health."),
    ctx: int = typer.Option(None, help=f"Context length per slot, in tokens. Default: min({DEFAULT_CTX}, the "
                            "model's). A prompt of ctx tokens or more is refused (400); generation stops at the "
                            "context's end with finish_reason 'length'."),
    parallel: int = typer.Option(DEFAULT_PARALLEL, help="Requests decoded together (slots, one KV cache row each)."),
    max_tokens_cap: int = typer.Option(DEFAULT_MAX_TOKENS_CAP, help="Most tokens one request may generate; "
                                       "max_tokens above it (or absent) is clamped to it."),
    queue: int = typer.Option(None, help="Requests that may wait for a slot; beyond it: 429 with Retry-After. "
                              "Default: 4 × --parallel."),
    mode: str = typer.Option("exact", help="exact: fp32 weights, matches HF transformers; fast: int4 weights "
                             "with bf16 activations, several times faster on CPU."),
    threads: int = typer.Option(None, min=1, help="CPU threads for the model (torch intra-op). Default: torch's, "
                                "one per core."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N. On CUDA the fast mode is bf16 weights, the KV "
                               "cache is allocated whole and decode steps replay CUDA graphs."),
    quant: str = typer.Option(None, help="With --device cuda: int8 or int4 weight-only linears (less memory "
                              "read per token, a little accuracy lost; see docs/ulm-engine.md)."),
    compile: bool = typer.Option(False, "--compile", help="With --device cuda: torch.compile the decode step "
                                 "under its CUDA graphs (fused kernels; compiles once per batch and length "
                                 "bucket, seconds each, at first use)."),
    alias: str = typer.Option(None, "--alias", metavar="NAME", help="The model's name as served: the id in "
                              "/v1/models and the `model` of every answer; requests may name it. Default: the "
                              "model's short name."),
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", metavar="ORIGIN", help="Let web pages from this origin (e.g. https://app.example, or '*' "
        "for any) call the API from a browser; repeatable. Default: no CORS headers at all.")] = None,
    log_file: str = typer.Option(None, "--log-file", metavar="PATH", help="Write the log (and anything on "
                                 "stdout/stderr after the 'listening on' line) to this file, rotated by size. "
                                 "Default: stderr."),
    log_max_bytes: int = typer.Option(DEFAULT_LOG_MAX_BYTES, help="Rotate --log-file past this many bytes."),
    log_backups: int = typer.Option(DEFAULT_LOG_BACKUPS, help="Rotated log files kept (FILE.1 is the newest)."),
    debug_token_delay_ms: float = typer.Option(0.0, hidden=True, help="Sleep after every engine step (tests)."),
    debug_fail_at_token: int = typer.Option(None, hidden=True, help="Fail the engine at a request's k-th token."),
    prefill_chunk: int = typer.Option(256, hidden=True, help="Prompt tokens prefilled per engine step."),
) -> None:
    """Serve a model over HTTP with the OpenAI API: /v1/chat/completions, /v1/completions (streaming with
    SSE), /v1/embeddings, /v1/models, plus /health, /metrics, /tokenize, /detokenize and llama.cpp's /props
    and /slots. Concurrent requests are decoded
    together, a chat turn reuses the cached prefix of the previous one, and SIGTERM drains gracefully.

    Example: `ulm serve --port 8080`, then
    `curl localhost:8080/v1/chat/completions -H 'Content-Type: application/json'
    -d '{"messages": [{"role": "user", "content": "hi"}]}'`, or any OpenAI client with
    base_url http://127.0.0.1:8080/v1.
    """
    tune_openmp(os.environ)  # before anything loads torch (and its libgomp)
    from ulm.errors import UlmError
    from ulm.server.settings import Settings, check_settings

    settings = Settings(model=model, host=host, port=port, api_key=api_key or None, ctx=ctx, parallel=parallel,
                        max_tokens_cap=max_tokens_cap, queue_size=queue, mode=mode, threads=threads,
                        device=device, quant=quant, compile=compile,
                        prefill_chunk=prefill_chunk, debug_token_delay=debug_token_delay_ms / 1000.0,
                        debug_fail_at_token=debug_fail_at_token, alias=alias, cors_origins=list(cors_origin or []),
                        log_file=log_file, log_max_bytes=log_max_bytes, log_backups=log_backups)
    try:
        check_settings(settings)
        from ulm.server.lifecycle import serve as run

        code = run(settings)
    except UlmError as exc:
        typer.echo(f"ulm serve: error: {exc}", err=True)
        raise typer.Exit(2) from None
    # The server has drained and closed everything it owns. Skip the interpreter's teardown: its final
    # garbage collection over torch's and transformers' objects takes seconds, past a 5 s SIGTERM budget.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
