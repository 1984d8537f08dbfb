"""What the server knows: its settings, and the model + engine once loaded.

The model loads in a background thread after the socket is bound, so `/health` can answer 503
("loading", with the load's current `ulm.progress` stage: `loading_stage`) meanwhile and 200 once the engine
runs; every model endpoint answers 503 until then. The tokenizer is prepared for constrained decoding
(`ulm.guided.Grammars`) in the same load, once; without llguidance installed the server runs and refuses
grammars. `capabilities()` is what the server can honour, for /props (cb reads `"grammar": true` there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ulm import progress
from ulm.engine.backend import Backend
from ulm.engine.worker import Engine
from ulm.guided.grammars import Grammars
from ulm.server.defaults import DEFAULT_CTX
from ulm.server.errors import APIError
from ulm.server.settings import Settings

log = logging.getLogger("ulm.server")


def _grammars(backend: Backend) -> Grammars | None:
    """The tokenizer prepared for llguidance, or None (logged) when llguidance is not installed."""
    try:
        import llguidance  # noqa: F401
    except ImportError:
        log.warning("llguidance is not installed: grammar, response_format and tools are refused "
                    "(pip install llguidance)")
        return None
    return Grammars(backend.tokenizer, backend.vocab_size, backend.eos_ids)

class ServerState:
    """Settings, the loaded backend and engine (None while loading), and why loading failed if it did."""

    def __init__(self, settings: Settings, load_backend: Callable[[], Backend] | None = None) -> None:
        self.settings = settings
        self.backend: Backend | None = None
        self.engine: Engine | None = None
        self.grammars: Grammars | None = None  # None: llguidance is not installed (or the model is loading)
        self.load_error: str | None = None
        self.created = int(time.time())
        self._load_backend = load_backend or self._load_ulm
        self.on_load_failure: Callable[[str], None] = lambda _: None
        self.loading_stage: progress.Stage | None = None  # the load's step under way (None between steps)

    def _on_stage(self, stage: progress.Stage) -> None:
        self.loading_stage = None if stage.finished else stage

    def _load_ulm(self) -> Backend:
        from ulm.engine.backend import UlmBackend

        s = self.settings
        return UlmBackend.load(s.model, s.mode, device=s.device, quant=s.quant, compile=s.compile)

    def load_and_run(self) -> None:
        """Load the model, then run the engine's loop in this same thread until it stops (see Engine.run);
        a load failure ends up in load_error."""
        t0 = time.monotonic()
        try:
            if self.settings.threads is not None:
                import torch

                torch.set_num_threads(self.settings.threads)
            with progress.listen(self._on_stage):
                backend = self._load_backend()
            self.loading_stage = None
            s = self.settings
            n_ctx = s.ctx if s.ctx is not None else min(DEFAULT_CTX, backend.max_seq_len)
            if n_ctx > backend.max_seq_len:
                raise ValueError(f"--ctx {n_ctx} is over the model's context length of {backend.max_seq_len}")
            engine = Engine(backend, parallel=s.parallel, n_ctx=n_ctx, queue_size=s.queue_size,
                            prefill_chunk=s.prefill_chunk, step_delay=s.debug_token_delay,
                            fail_at_token=s.debug_fail_at_token)
            self.grammars = _grammars(backend)
            self.backend = backend
            self.engine = engine
        except Exception as exc:
            self.load_error = str(exc) or type(exc).__name__
            log.error("model failed to load: %s", self.load_error)
            self.on_load_failure(self.load_error)
            return
        log.info("model %s ready in %.1fs: context %d, %d slots", backend.model_id, time.monotonic() - t0,
                 n_ctx, s.parallel)
        engine.run()

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load_and_run, name="ulm-engine", daemon=True)
        thread.start()
        return thread

    def capabilities(self) -> dict[str, bool]:
        """What requests may ask for beyond plain sampling (false while the model loads)."""
        constrains = self.grammars is not None
        return {"grammar": constrains, "response_format": constrains, "tools": constrains, "logprobs": True}

    @property
    def status(self) -> str:
        if self.load_error is not None:
            return "error"
        if self.engine is None:
            return "loading"
        return "ok" if self.engine.alive else "error"

    def ready(self) -> tuple[Backend, Engine]:
        """The backend and engine, or a 503 saying why not."""
        if self.engine is None or self.backend is None:
            if self.load_error is not None:
                raise APIError(503, f"the model failed to load: {self.load_error}")
            raise APIError(503, "the model is still loading; retry shortly", headers={"Retry-After": "1"})
        if not self.engine.alive:
            why = self.engine.error or "the server is shutting down"
            raise APIError(503, f"the engine is not running: {why}")
        return self.backend, self.engine

    @property
    def model_name(self) -> str:
        """The served model's name: --alias, else the loaded model's short name (call after `ready`)."""
        if self.settings.alias:
            return self.settings.alias
        return self.backend.model_id if self.backend is not None else ""
