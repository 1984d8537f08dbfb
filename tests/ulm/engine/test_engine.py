"""The engine over a scripted backend: text safety (UTF-8, stop strings), budgets, batching, prefix reuse,
cancellation, the bounded queue, draining and fault isolation.

Run: .venv/bin/python -m pytest tests/ulm/engine -q
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.ulm.engine.scripted import ScriptedBackend
from ulm.engine.types import (
    FINISH_CANCELLED,
    FINISH_LENGTH,
    FINISH_STOP,
    EngineStoppedError,
    Event,
    Failed,
    QueueFullError,
    Request,
)
from ulm.engine.worker import Engine
from ulm.errors import ContextLengthError, EmptyPromptError
from ulm.sampling import SamplingParams

SCRIPT = "Hello there, é🙂中 world. The end is near."
GREEDY = SamplingParams(temperature=0.0)


class Collector:
    """A sink that records events and lets a test wait for the end."""

    def __init__(self) -> None:
        self.events: list[Event | Failed] = []
        self.done = threading.Event()

    def __call__(self, event: Event | Failed) -> None:
        self.events.append(event)
        if isinstance(event, Failed) or event.finish_reason is not None:
            self.done.set()

    @property
    def deltas(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, Event) and e.text]

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    def end(self, timeout: float = 10.0) -> Event | Failed:
        assert self.done.wait(timeout), "the request never finished"
        return self.events[-1]


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


@pytest.fixture
def make_engine(smollm2_tokenizer: Any) -> Iterator[Callable[..., tuple[Engine, ScriptedBackend]]]:
    engines: list[Engine] = []

    def make(script: str = SCRIPT, **kwargs: Any) -> tuple[Engine, ScriptedBackend]:
        backend = ScriptedBackend.from_text(smollm2_tokenizer, script)
        engine = Engine(backend, **{"parallel": 2, "n_ctx": 256, **kwargs}).start()
        engines.append(engine)
        return engine, backend

    yield make
    for engine in engines:
        engine.stop(grace=0.0)


def prompt(tok: Any, text: str = "Say something.") -> list[int]:
    return list(tok.encode(text, add_special_tokens=False))


def run(engine: Engine, ids: list[int], max_tokens: int = 64, stop: tuple[str, ...] = (),
        sampling: SamplingParams = GREEDY) -> tuple[Collector, Event | Failed]:
    sink = Collector()
    engine.submit(Request(ids, max_tokens, sampling, stop), sink)
    return sink, sink.end()


def test_streamed_text_is_whole_characters_and_equals_the_script(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine()
    sink, end = run(engine, prompt(smollm2_tokenizer))
    assert isinstance(end, Event) and end.finish_reason == FINISH_STOP
    assert sink.text == SCRIPT
    assert all("\ufffd" not in d for d in sink.deltas)
    assert len(sink.deltas) > 5  # streamed piece by piece, not in one go


@pytest.mark.parametrize(("stop", "expected"), [
    (".", "Hello there, é🙂中 world"),  # a single character
    ("The end", "Hello there, é🙂中 world. "),  # several tokens
    ("ere,", "Hello th"),  # begins in the middle of a token
    ("🙂中 w", "Hello there, é"),  # spans tokens, multi-byte characters included
    ("Hello", ""),  # the very first token
    ("not in the text", SCRIPT),
])
def test_stop_strings_cut_exactly_and_never_leak_a_prefix(make_engine, smollm2_tokenizer, stop, expected) -> None:
    engine, _ = make_engine()
    sink, end = run(engine, prompt(smollm2_tokenizer), stop=(stop, "zzz"))
    assert isinstance(end, Event)
    assert sink.text == expected
    assert end.finish_reason == FINISH_STOP
    emitted = ""
    for delta in sink.deltas:  # nothing emitted is ever withdrawn: every prefix is a prefix of the answer
        emitted += delta
        assert expected.startswith(emitted)


def test_earliest_of_several_stop_strings_wins(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine()
    sink, _ = run(engine, prompt(smollm2_tokenizer), stop=("near", "world", "end"))
    assert sink.text == "Hello there, é🙂中 "


def test_max_tokens_ends_with_length(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine()
    sink, end = run(engine, prompt(smollm2_tokenizer), max_tokens=3)
    assert isinstance(end, Event)
    assert (end.finish_reason, end.usage.completion_tokens) == (FINISH_LENGTH, 3)
    assert SCRIPT.startswith(sink.text) and sink.text


def test_prompt_filling_the_context_is_refused_and_one_short_gets_one_token(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine(n_ctx=64)
    ids = (prompt(smollm2_tokenizer, "word " * 80))[:64]
    with pytest.raises(ContextLengthError) as err:
        engine.submit(Request(ids, 5, GREEDY), Collector())
    assert (err.value.n_prompt_tokens, err.value.n_ctx) == (64, 64)
    _, end = run(engine, ids[:63], max_tokens=5)
    assert isinstance(end, Event)
    assert (end.finish_reason, end.usage.completion_tokens) == (FINISH_LENGTH, 1)
    with pytest.raises(EmptyPromptError):
        engine.submit(Request([], 5, GREEDY), Collector())


def test_concurrent_requests_are_decoded_in_one_batch(make_engine, smollm2_tokenizer) -> None:
    engine, backend = make_engine(step_delay=0.01)
    sinks = [Collector(), Collector()]
    for i, sink in enumerate(sinks):
        engine.submit(Request(prompt(smollm2_tokenizer, f"prompt {i}"), 64, GREEDY), sink)
    for sink in sinks:
        sink.end()
        assert sink.text == SCRIPT
    assert (1, 1) in backend.forwards  # two rows, one token each


def test_seeded_sampling_is_the_same_alone_and_batched(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine()
    seeded = SamplingParams(temperature=0.9, top_p=0.95, seed=7)
    alone, _ = run(engine, prompt(smollm2_tokenizer), sampling=seeded)
    sinks = [Collector(), Collector()]
    for sink in sinks:
        engine.submit(Request(prompt(smollm2_tokenizer), 64, seeded), sink)
    for sink in sinks:
        sink.end()
        assert sink.text == alone.text


def test_a_follow_up_prompt_reuses_the_cached_prefix(make_engine, smollm2_tokenizer) -> None:
    engine, backend = make_engine(parallel=1)
    first = prompt(smollm2_tokenizer, "A long first turn of the conversation.")
    sink, end = run(engine, first)
    assert isinstance(end, Event) and end.usage.cached_tokens == 0
    generated = prompt(smollm2_tokenizer, sink.text)
    second = first + generated + prompt(smollm2_tokenizer, " And a second question?")
    n_forwards = len(backend.forwards)
    _, end2 = run(engine, second)
    assert isinstance(end2, Event)
    assert end2.usage.cached_tokens >= len(first)
    assert end2.usage.prefilled_tokens == len(second) - end2.usage.cached_tokens
    prefill = backend.forwards[n_forwards]
    assert prefill == (len(second) - end2.usage.cached_tokens,)  # only the new part was prefilled


def test_an_identical_prompt_still_prefills_its_last_token(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine(parallel=1)
    ids = prompt(smollm2_tokenizer)
    run(engine, ids)
    sink, end = run(engine, ids)
    assert isinstance(end, Event)
    assert end.usage.cached_tokens == len(ids) - 1
    assert sink.text == SCRIPT


def test_cancel_while_running_frees_the_slot_within_one_step(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine(parallel=1, step_delay=0.05)
    sink = Collector()
    ticket = engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), sink)
    wait_until(lambda: len(sink.deltas) >= 2)
    steps = engine.steps
    engine.cancel(ticket)
    end = sink.end(timeout=1.0)
    assert isinstance(end, Event) and end.finish_reason == FINISH_CANCELLED
    assert engine.slots_busy == 0
    assert engine.steps - steps <= 1


def test_cancel_during_a_chunked_prefill_stops_it(make_engine, smollm2_tokenizer) -> None:
    engine, backend = make_engine(parallel=1, step_delay=0.05, prefill_chunk=8)
    long_prompt = prompt(smollm2_tokenizer, "many words " * 40)[:200]
    sink = Collector()
    ticket = engine.submit(Request(long_prompt, 64, GREEDY), sink)
    wait_until(lambda: engine.steps >= 2)
    engine.cancel(ticket)
    end = sink.end(timeout=1.0)
    assert isinstance(end, Event) and end.finish_reason == FINISH_CANCELLED
    assert end.usage.completion_tokens == 0
    assert engine.slots_busy == 0
    assert len(backend.forwards) < 200 // 8  # the prefill did not run to its end


def test_cancel_while_queued_leaves_the_queue_at_once(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine(parallel=1, step_delay=0.02)
    running = Collector()
    engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), running)
    wait_until(lambda: engine.slots_busy == 1)
    queued = Collector()
    ticket = engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), queued)
    assert engine.queue_depth == 1
    engine.cancel(ticket)
    assert engine.queue_depth == 0
    end = queued.end(timeout=0.1)
    assert isinstance(end, Event) and end.finish_reason == FINISH_CANCELLED
    assert running.end().finish_reason == FINISH_STOP  # type: ignore[union-attr]


def test_a_full_queue_refuses_at_once(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine(parallel=1, queue_size=2, step_delay=0.02)
    sinks = [Collector() for _ in range(3)]
    for sink in sinks:
        engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), sink)
        wait_until(lambda: engine.slots_busy == 1)
    wait_until(lambda: engine.slots_busy == 1 and engine.queue_depth == 2)
    t0 = time.monotonic()
    with pytest.raises(QueueFullError) as err:
        engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), Collector())
    assert time.monotonic() - t0 < 0.05
    assert err.value.retry_after_s >= 1
    for sink in sinks:
        assert isinstance(sink.end(), Event)


def test_stop_cuts_running_requests_after_the_grace_period(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine(parallel=1, step_delay=0.05)
    running, queued = Collector(), Collector()
    engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), running)
    wait_until(lambda: engine.slots_busy == 1)
    engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), queued)
    wait_until(lambda: len(running.deltas) >= 1)
    t0 = time.monotonic()
    engine.stop(grace=0.2)
    assert time.monotonic() - t0 < 1.0
    assert running.end(0).finish_reason == FINISH_LENGTH  # type: ignore[union-attr]
    assert queued.end(0).finish_reason == FINISH_LENGTH  # type: ignore[union-attr]
    assert SCRIPT.startswith(running.text) and running.text != SCRIPT
    with pytest.raises(EngineStoppedError):
        engine.submit(Request(prompt(smollm2_tokenizer), 4, GREEDY), Collector())


def test_an_engine_fault_fails_its_requests_and_the_engine_goes_on(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine(fail_at_token=3)
    sink, end = run(engine, prompt(smollm2_tokenizer))
    assert isinstance(end, Failed)
    assert "internal error" in end.message
    assert engine.alive and engine.slots_busy == 0
    engine.fail_at_token = None
    sink, end = run(engine, prompt(smollm2_tokenizer))
    assert isinstance(end, Event) and sink.text == SCRIPT


class Fatal(BaseException):
    """Not an Exception: what a step cannot recover from (it escapes the per-step guard)."""


def test_a_dead_engine_fails_everything_refuses_more_and_reports_unhealthy(make_engine, smollm2_tokenizer) -> None:
    from ulm.server.settings import Settings
    from ulm.server.state import ServerState

    engine, backend = make_engine(parallel=1, step_delay=0.02)

    def crash(*args: Any) -> Any:
        raise Fatal("the device fell off the bus")

    running, queued = Collector(), Collector()
    backend.forward = crash  # type: ignore[method-assign]
    engine.submit(Request(prompt(smollm2_tokenizer), 8, GREEDY), running)
    engine.submit(Request(prompt(smollm2_tokenizer), 8, GREEDY), queued)
    for sink in (running, queued):
        end = sink.end()
        assert isinstance(end, Failed) and "restart" in end.message
    assert not engine.alive and "Fatal" in (engine.error or "")
    with pytest.raises(EngineStoppedError):
        engine.submit(Request(prompt(smollm2_tokenizer), 8, GREEDY), Collector())
    state = ServerState(Settings())
    state.backend, state.engine = backend, engine
    assert state.status == "error"  # /health answers 503 with this status


def test_bad_sampling_settings_are_refused_at_submit_and_the_engine_goes_on(make_engine, smollm2_tokenizer) -> None:
    engine, _ = make_engine()
    with pytest.raises(ValueError, match="top_p"):
        engine.submit(Request(prompt(smollm2_tokenizer), 8, SamplingParams(top_p=0.0)), Collector())
    with pytest.raises(ValueError, match="max_tokens"):
        engine.submit(Request(prompt(smollm2_tokenizer), 0, GREEDY), Collector())
    sink, end = run(engine, prompt(smollm2_tokenizer))
    assert isinstance(end, Event) and sink.text == SCRIPT


def test_a_long_prefill_is_chunked_into_the_other_rows_decode_steps(make_engine, smollm2_tokenizer) -> None:
    nato = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
            "quebec romeo sierra tango uniform victor whiskey xray yankee zulu")
    engine, backend = make_engine(script=nato, parallel=2, prefill_chunk=8, step_delay=0.01)
    first = Collector()
    engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), first)
    wait_until(lambda: len(first.deltas) >= 1)
    start = len(backend.forwards)
    second = Collector()
    long_prompt = prompt(smollm2_tokenizer, "many words " * 40)[:80]
    engine.submit(Request(long_prompt, 4, GREEDY), second)
    second.end()
    assert first.end().finish_reason == FINISH_STOP  # type: ignore[union-attr]
    assert first.text == nato
    chunks = [shape for shape in backend.forwards[start:] if shape[-1] == 8]
    assert chunks == [(1, 8)] * 10  # 80 prompt tokens, 8 a step, each in the first request's decode step


def test_requests_arriving_together_prefill_in_one_forward_within_the_chunk_budget(make_engine,
                                                                                  smollm2_tokenizer) -> None:
    engine, backend = make_engine(parallel=3, prefill_chunk=12, step_delay=0.05)
    first = Collector()
    engine.submit(Request(prompt(smollm2_tokenizer), 64, GREEDY), first)
    wait_until(lambda: len(first.deltas) >= 1)
    start = len(backend.forwards)
    late = [prompt(smollm2_tokenizer, "A second prompt, seven tokens."),
            prompt(smollm2_tokenizer, "And a third prompt, a little longer.")]
    sinks = [Collector(), Collector()]
    for ids, sink in zip(late, sinks, strict=True):  # both land while the engine sleeps in its step delay
        engine.submit(Request(ids, 4, GREEDY), sink)
    for sink in sinks:
        assert isinstance(sink.end(), Event) and sink.text
    a, b = len(late[0]), len(late[1])
    assert a + b > 12 and a < 12
    shapes = backend.forwards[start:]
    # one step: the first request's token, all of the second prompt, the third's up to the budget of 12
    assert (1, a, 12 - a) in shapes
    assert (1, 1, b - (12 - a)) in shapes  # the rest of the third prompt next to two decoding rows
