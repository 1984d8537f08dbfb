"""Prometheus text-format metrics, kept by hand (no client library): counters, gauges read at scrape
time, and cumulative histograms. Thread-safe, as the engine thread and the event loop both record."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str) -> list[str]:
        out, cumulative = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        cumulative += self.counts[-1]
        out += [f'{name}_bucket{{le="+Inf"}} {cumulative}', f"{name}_sum {self.sum:.6f}", f"{name}_count {cumulative}"]
        return out


class Metrics:
    """The server's metrics; `render()` is the /metrics body."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]] | None = None,
                 counters: dict[str, tuple[str, Callable[[], float]]] | None = None) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}  # (endpoint, status) → count
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.generated_tokens = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.token_latency = Histogram(TOKEN_BUCKETS)
        self.gauges = gauges or {}  # name → (help, read at scrape time)
        self.counters = counters or {}  # the same, for counts kept elsewhere (the engine's steps)

    def count_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            key = (endpoint, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1

    def count_tokens(self, prompt: int, cached: int, generated: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.cached_tokens += cached
            self.generated_tokens += generated

    def observe_ttft(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)

    def observe_tokens(self, seconds: float, n: int) -> None:
        """n tokens arrived together after `seconds`: n observations of seconds / n each."""
        with self._lock:
            for _ in range(n):
                self.token_latency.observe(seconds / n)

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP ulm_requests_total HTTP requests by endpoint and status code.",
                     "# TYPE ulm_requests_total counter"]
            for (endpoint, status), count in sorted(self.requests.items()):
                lines.append(f"ulm_requests_total{_labels({'endpoint': endpoint, 'status': status})} {count}")
            for name, value, text in (
                ("ulm_prompt_tokens_total", self.prompt_tokens, "Prompt tokens of finished requests."),
                ("ulm_prompt_tokens_cached_total", self.cached_tokens, "Prompt tokens reused from the cache."),
                ("ulm_generated_tokens_total", self.generated_tokens, "Tokens generated."),
            ):
                lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {value}"]
            lines += ["# HELP ulm_time_to_first_token_seconds Request arrival to its first token.",
                      "# TYPE ulm_time_to_first_token_seconds histogram",
                      *self.ttft.lines("ulm_time_to_first_token_seconds"),
                      "# HELP ulm_token_latency_seconds Time between consecutive tokens of a request.",
                      "# TYPE ulm_token_latency_seconds histogram",
                      *self.token_latency.lines("ulm_token_latency_seconds")]
        for kind, table in (("gauge", self.gauges), ("counter", self.counters)):
            for name, (text, read) in table.items():
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
