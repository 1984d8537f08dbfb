"""`Engine.call`: other model work (the server's embeddings) run in the engine's own thread between its steps,
while requests keep decoding; refused once the engine stops; run by `turn` in process.

Run: .venv/bin/python -m pytest tests/ulm/engine/test_engine_call.py -q
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.ulm.engine.scripted import ScriptedBackend
from ulm.engine.types import EngineStoppedError, Event, Failed, Request
from ulm.engine.worker import Engine
from ulm.sampling import SamplingParams

SCRIPT = "One two three four five six seven eight nine ten."


def test_call_runs_in_the_engine_thread_while_a_request_decodes(smollm2_tokenizer: Any) -> None:
    backend = ScriptedBackend.from_text(smollm2_tokenizer, SCRIPT)
    engine = Engine(backend, parallel=1, n_ctx=256, step_delay=0.02).start()
    events: list[Event | Failed] = []
    done = threading.Event()

    def sink(ev: Event | Failed) -> None:
        events.append(ev)
        if isinstance(ev, Failed) or ev.finish_reason is not None:
            done.set()

    try:
        engine.submit(Request(backend.encode("Count."), 32, SamplingParams(temperature=0.0)), sink)
        seen: list[int] = []
        where = engine.call(lambda: (threading.current_thread().name, seen.append(engine.steps))).result(5)
        assert where[0] == "ulm-engine" and threading.current_thread().name != "ulm-engine"
        assert engine.call(lambda: 1 / 0).exception(5).__class__ is ZeroDivisionError  # the engine goes on
        assert done.wait(10)
        assert isinstance(events[-1], Event) and events[-1].finish_reason is not None
        assert seen and seen[0] < engine.steps  # it ran while the request still had steps to go
    finally:
        engine.stop(grace=0.0)
    with pytest.raises(EngineStoppedError):
        engine.call(lambda: None)


def test_in_process_a_turn_runs_the_queued_calls(smollm2_tokenizer: Any) -> None:
    engine = Engine(ScriptedBackend.from_text(smollm2_tokenizer, SCRIPT), parallel=1, n_ctx=256)
    future = engine.call(lambda: threading.current_thread().name)
    assert not future.done()
    engine.turn()
    assert future.result(0) == threading.current_thread().name
