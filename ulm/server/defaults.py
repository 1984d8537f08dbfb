"""`ulm serve`'s default limits, in a stdlib-only module so `ulm --help` does not import torch."""

DEFAULT_PORT = 8080
DEFAULT_CTX = 2048  # per slot, capped by the model's own context length
DEFAULT_PARALLEL = 4
DEFAULT_MAX_TOKENS_CAP = 1024
DEFAULT_MAX_BODY = 4 * 2**20  # bytes; larger bodies get 413 before they are read
SHUTDOWN_GRACE_S = 2.0  # in-flight streams may finish this long after SIGTERM, then are cut
SSE_KEEPALIVE_S = 5.0  # a streamed request waiting (queued, prefilling) gets an SSE comment this often
DEFAULT_LOG_MAX_BYTES = 10 * 2**20  # --log-file rotates past this size
DEFAULT_LOG_BACKUPS = 3  # rotated log files kept (server.log.1 … .3)
