"""Progress of µLM's long steps (kernel build, verifying or joining a model's pieces, conversion, first load),
reported by the code doing them and shown by whoever listens: a rich bar in the `ulm` commands, the server's
`/health` (which cb's spinner reads), nothing at all in a library call.

    with progress.stage("checking qwen2.5-coder-1.5b", total=size, unit="B") as step:
        step.update(done)                          # or step.advance(n); total None = no known fraction
    with progress.listen(callback):                # callback(Stage) on every change, from the working thread
        ...

A stage that ends (or fails) is reported once more with `finished` set. Stdlib only; listeners must be cheap
(updates are throttled to one per 1 % or 0.1 s per stage).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

_MIN_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Stage:
    """A snapshot of one step: what it is, how far (done of total, in its own unit), whether it is over."""

    name: str
    done: float = 0.0
    total: float | None = None
    unit: str = ""  # "B" for bytes (shown as MB), else a word ("layers") or nothing
    finished: bool = False

    @property
    def amount(self) -> str:
        """How far, for people: "420/1117 MB", "12/28 layers", "" when nothing is counted."""
        if self.unit == "B":
            total = f"/{self.total / 1e6:.0f}" if self.total else ""
            return f"{self.done / 1e6:.0f}{total} MB"
        if not self.total:
            return ""
        return f"{self.done:.0f}/{self.total:.0f} {self.unit}".rstrip()

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)


Listener = Callable[[Stage], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def _emit(stage: Stage) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(stage)


class Step:
    """The handle a running stage reports through."""

    def __init__(self, name: str, total: float | None, unit: str) -> None:
        self._stage = Stage(name, 0.0, total, unit)
        self._last_t, self._last_fraction = 0.0, -1.0

    def update(self, done: float, total: float | None = None) -> None:
        stage = replace(self._stage, done=done, total=self._stage.total if total is None else total)
        self._stage = stage
        now, fraction = time.monotonic(), stage.fraction or 0.0
        if now - self._last_t >= _MIN_INTERVAL_S or fraction - self._last_fraction >= 0.01:
            self._last_t, self._last_fraction = now, fraction
            _emit(stage)

    def advance(self, n: float) -> None:
        self.update(self._stage.done + n)

    def _finish(self) -> None:
        _emit(replace(self._stage, finished=True))


@contextlib.contextmanager
def stage(name: str, total: float | None = None, unit: str = "") -> Iterator[Step]:
    """Report a step named `name` (shown as is: lower case, e.g. "building the native kernels")."""
    step = Step(name, total, unit)
    _emit(step._stage)
    try:
        yield step
    finally:
        step._finish()


@contextlib.contextmanager
def listen(listener: Listener) -> Iterator[None]:
    """Call `listener` with every stage update while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
