"""`ulm serve`'s settings and their checks, stdlib only: the command validates them (and refuses a
non-loopback bind without a key) before importing torch, so a mistake is reported at once."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ulm.errors import UlmError
from ulm.server.defaults import (
    DEFAULT_LOG_BACKUPS,
    DEFAULT_LOG_MAX_BYTES,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_TOKENS_CAP,
    DEFAULT_PARALLEL,
    DEFAULT_PORT,
)


@dataclass
class Settings:
    """`ulm serve`'s options."""

    model: str | None = None  # registry name, .gguf file or HF dir; None = the embedded default
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: str | None = None
    ctx: int | None = None  # per-slot context; None = min(model's, DEFAULT_CTX)
    parallel: int = DEFAULT_PARALLEL
    max_tokens_cap: int = DEFAULT_MAX_TOKENS_CAP
    queue_size: int | None = None  # waiting requests beyond the slots; None = 4 × parallel
    max_body: int = DEFAULT_MAX_BODY
    mode: str = "exact"  # "exact" (fp32) or "fast" (int4 weights, bf16; on CUDA: bf16 weights)
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"
    quant: str | None = None  # CUDA weight-only linears: "int8" or "int4"; None = float weights
    compile: bool = False  # CUDA: torch.compile under the decode graphs
    threads: int | None = None  # torch intra-op threads; None = torch's default (one per core)
    prefill_chunk: int = 256
    debug_token_delay: float = 0.0  # seconds slept after each engine step (tests)
    debug_fail_at_token: int | None = None  # raise in the engine at a request's k-th token (tests)
    alias: str | None = None  # the served model name (/v1/models, answers, requests' `model`); None = the model's
    cors_origins: list[str] = field(default_factory=list)  # browser origins allowed (CORS); empty = no CORS headers
    log_file: str | None = None  # the log (and stdout/stderr) go here, rotated by size; None = stderr
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_backups: int = DEFAULT_LOG_BACKUPS


class ServeError(UlmError):
    """A server that cannot start: the message says why and what to do."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(s: Settings) -> None:
    if not is_loopback(s.host) and not s.api_key:
        raise ServeError(f"refusing to listen on {s.host} without an API key: anyone who can reach it could use "
                         "the model; pass --api-key (or set ULM_API_KEY), or keep the default --host 127.0.0.1")
    for name, value, low in (("--parallel", s.parallel, 1), ("--max-tokens-cap", s.max_tokens_cap, 1),
                             ("--ctx", s.ctx if s.ctx is not None else 2, 2), ("--port", s.port, 0)):
        if value < low:
            raise ServeError(f"{name} must be at least {low}, got {value}")
    if s.queue_size is not None and s.queue_size < 0:
        raise ServeError(f"--queue must be at least 0, got {s.queue_size}")
    if s.mode not in ("exact", "fast"):
        raise ServeError(f"--mode must be exact or fast, got '{s.mode}'")
    check_device(s)
    if s.alias is not None and (not s.alias.strip() or len(s.alias) > 256 or not s.alias.isprintable()):
        raise ServeError("--alias must be 1 to 256 printable characters")
    for origin in s.cors_origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ServeError(f"--cors-origin must be '*' or an origin such as https://app.example, got '{origin}'")
    if s.log_max_bytes < 1024 or s.log_backups < 1:
        raise ServeError("--log-max-bytes must be at least 1024 and --log-backups at least 1")
    if s.port > 65535:
        raise ServeError(f"--port must be at most 65535, got {s.port}")


def check_device(s: Settings) -> None:
    """The device options: a device torch knows and sees, and CUDA-only options only with CUDA."""
    kind, _, index = s.device.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise ServeError(f"--device must be cpu, cuda or cuda:N, got '{s.device}'")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ServeError(f"--device {s.device}: this torch ({torch.__version__}) sees no CUDA device; install a "
                             "CUDA build of torch (make run TORCH_SPEC='torch>=2.4') or serve on the CPU")
        if int(index or 0) >= torch.cuda.device_count():
            raise ServeError(f"--device {s.device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif s.quant is not None or s.compile:
        raise ServeError("--quant and --compile are for --device cuda (the CPU's fast mode picks its own weights)")
    if s.quant not in (None, "int8", "int4"):
        raise ServeError(f"--quant must be int8 or int4, got '{s.quant}'")
