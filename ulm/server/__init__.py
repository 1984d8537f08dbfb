"""`ulm serve`: an OpenAI-compatible HTTP server over the engine.

    defaults.py   default limits (stdlib only, for the CLI's --help)
    settings.py   the options and their checks (stdlib only: bad options fail before torch loads)
    schemas.py    request/response bodies (pydantic), the source of /openapi.json
    errors.py     OpenAI-shaped errors and the handlers that produce them (400, never 422)
    guard.py      ASGI front: API key, content type, body size, access log, request counter
    sse.py        SSE framing and a streaming response that notices disconnects
    generation.py one request through the engine, answered whole or streamed
    metrics.py    Prometheus text metrics
    state.py      settings, background model load, readiness
    app.py        the FastAPI routes (and CORS, with --cors-origin)
    embeddings.py /v1/embeddings: mean-pooled last hidden state
    introspect.py llama.cpp's /props and /slots
    logfile.py    --log-file: the log (and stdout/stderr) rotated by size
    lifecycle.py  bind, serve, drain on SIGTERM
"""
