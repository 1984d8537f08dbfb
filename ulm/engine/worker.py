"""The engine: it owns the model's backend, the slots and the sampler, fed by a bounded queue.

Each turn of its loop it
1. acts on cancellations (a cancelled request leaves its slot at once, queued or running),
2. seats waiting requests in free slots (the slot with the longest cached prefix of the prompt wins),
3. runs one forward for every slot past prefill (one token each) together with the next prompt chunks of
   the requests still prefilling, oldest first, `prefill_chunk` tokens in all (so decodes and
   cancellations are never stalled behind long prompts for more than one chunk): the prompts' tokens ride
   in the decode step's pass over the weights, and requests that arrive together prefill together;
   then samples every row that needs a token (`ulm.sampling.BatchSampler`, each request with its own
   params and seed) and turns the tokens into text (`textout.TextOutput`). Rows of constrained requests
   (`Request.constraint`) sample under their grammar's token mask, computed while the forward runs
   (`ulm.engine.masks`); a grammar that is complete ends its request.

Two ways to drive it:
- a worker loop (`run` in the thread that loaded the model, or `start` for a new thread), for the server:
  `submit` never blocks (a full queue raises QueueFullError at once) and events go to each request's sink
  from the worker, a step's events together right before the next forward (or before the worker waits),
  so the server's event loop is woken once a step rather than once a token and mostly streams them while
  the forward runs in native code (each wake-up can still hand it the GIL at once: py-spy puts ~5% of this
  thread's time there at 4 clients). `stop(grace)` drains: queued requests end at once, running ones may
  finish within the grace period and are then cut with finish_reason "length". `call(fn)` runs other model
  work (the server's embeddings) in this same thread between two steps;
- in process (`generate`, `turn`), for `ulm.Model`: the calling thread runs the turns itself, so the
  forward runs in the thread that loaded the model, as the worker does (see `run`).

Request timings are on the engine's clock, the time spent in steps, so neither a wait for work nor an
in-process caller's time between events counts as prefill or decode time.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future
from typing import Any

import torch

from ulm.engine.backend import Backend
from ulm.engine.masks import StepMasks, overlap_pays
from ulm.engine.slots import Active, Slot, Ticket, pick_slot
from ulm.engine.textout import TextOutput
from ulm.engine.types import (
    FINISH_CANCELLED,
    FINISH_LENGTH,
    FINISH_STOP,
    NO_TIMINGS,
    EngineStoppedError,
    Event,
    Failed,
    FinishReason,
    QueueFullError,
    Request,
    Sink,
    Timings,
    TokenLogprob,
    Usage,
)
from ulm.guided.constraint import GrammarViolation
from ulm.sampling import BatchSampler

log = logging.getLogger("ulm.engine")

RUNNING, DRAINING, STOPPED, DEAD = "running", "draining", "stopped", "dead"


class InjectedFault(RuntimeError):
    """The debug fault (`fail_at_token`) firing: behaves as any engine exception does."""


class Engine:
    """Continuous batching over `parallel` slots of `n_ctx` positions each."""

    def __init__(
        self,
        backend: Backend,
        parallel: int = 4,
        n_ctx: int = 2048,
        queue_size: int | None = None,
        prefill_chunk: int = 256,
        step_delay: float = 0.0,
        fail_at_token: int | None = None,
    ) -> None:
        if parallel < 1 or n_ctx < 2 or prefill_chunk < 1:
            raise ValueError("parallel must be >= 1, n_ctx >= 2 and prefill_chunk >= 1")
        self.backend = backend
        self.parallel = parallel
        self.n_ctx = n_ctx
        self.queue_size = 4 * parallel if queue_size is None else queue_size
        self.prefill_chunk = prefill_chunk
        self.step_delay = step_delay  # debug: seconds slept after every forward, for deterministic tests
        self.fail_at_token = fail_at_token  # debug: raise inside the step that samples a request's k-th token
        self.steps = 0  # forwards run (prefill chunks and decode steps)
        self.state = RUNNING
        self.error: str | None = None  # why the engine died, when state == DEAD
        self._slots = [Slot(row) for row in range(parallel)]
        self._outbox: list[tuple[Ticket, Event | Failed]] = []  # events of the last step, not yet delivered
        self._sampler = BatchSampler(parallel, backend.vocab_size, getattr(backend, "device", "cpu"))  # row i = slot i
        self._pending: deque[Ticket] = deque()
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()  # work for the engine's thread
        self._masks: StepMasks | None = None  # token masks of constrained requests (ulm.engine.masks)
        self.mask_overlap = overlap_pays()  # compute a step's masks during its forward, or before it
        self._cond = threading.Condition()
        self._turn_lock = threading.Lock()  # in-process callers take turns one at a time
        self._drain_deadline = 0.0
        self._busy_s = 0.0  # the engine's clock: seconds spent in steps so far
        self._step_t0: float | None = None  # perf_counter() when the running step began
        self._thread: threading.Thread | None = None  # the worker: started by start(), or whoever calls run()
        self._exited = threading.Event()
        backend.allocate(parallel, n_ctx)

    # -- any thread ---------------------------------------------------------------------------------------

    def start(self) -> Engine:
        """Run the worker loop in a new thread."""
        threading.Thread(target=self.run, name="ulm-engine", daemon=True).start()
        return self

    def run(self) -> None:
        """Run the worker loop in the calling thread until stopped. Running it in the thread that loaded the
        model keeps torch to one OpenMP thread team (a second team's spinning threads halve decode speed on
        a small machine)."""
        self._thread = threading.current_thread()
        try:
            self._run()
        finally:
            self._exited.set()

    def check(self, request: Request) -> None:
        """Raise the error submit would raise for this request (callers check before streaming)."""
        request.check(self.n_ctx, self.backend.vocab_size)

    def submit(self, request: Request, sink: Sink) -> Ticket:
        """Queue a request; its events go to `sink` from the thread running the engine. Never blocks."""
        self.check(request)
        ticket = Ticket(request, sink)
        with self._cond:
            if self.state != RUNNING:
                raise EngineStoppedError("the engine is shutting down" if self.state != DEAD else "the engine died")
            if len(self._pending) >= self.queue_size:
                raise QueueFullError(retry_after_s=1)
            self._pending.append(ticket)
            self._cond.notify_all()
        return ticket

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` in the thread running the engine, between two steps (so it never races a forward, and the
        model keeps one OpenMP thread team); its result or exception comes in the future. In process, the
        next `turn` runs it."""
        future: Future[Any] = Future()
        with self._cond:
            if self.state != RUNNING:
                raise EngineStoppedError("the engine is shutting down" if self.state != DEAD else "the engine died")
            self._calls.append((fn, future))
            self._cond.notify_all()
        return future

    def cancel(self, ticket: Ticket) -> None:
        """Withdraw a request: dropped from the queue now, or its slot freed at the engine's next turn."""
        with self._cond:
            if ticket.cancelled:
                return
            ticket.cancelled = True
            queued = ticket in self._pending
            if queued:
                self._pending.remove(ticket)
            self._cond.notify_all()
        if queued:
            _emit(ticket, _unstarted(ticket, FINISH_CANCELLED))

    def stop(self, grace: float = 0.0, timeout: float | None = 5.0) -> None:
        """Stop accepting; end queued requests; let running ones finish for `grace` s, then cut them.
        Waits up to `timeout` s for the worker to exit (None: return at once, e.g. from a signal handler)."""
        with self._cond:
            if self.state == RUNNING:
                self.state = DRAINING
                self._drain_deadline = time.monotonic() + grace
                dropped = list(self._pending)
                self._pending.clear()
            else:
                dropped = []
            self._cond.notify_all()
        for ticket in dropped:
            _emit(ticket, _unstarted(ticket, FINISH_LENGTH))
        if timeout is not None and self._thread is not None and threading.current_thread() is not self._thread:
            self._exited.wait(timeout)

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The slots, for a look at their state (read from any thread: an `active` may end any moment)."""
        return tuple(self._slots)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def slots_busy(self) -> int:
        return sum(slot.active is not None for slot in self._slots)

    @property
    def alive(self) -> bool:
        return self.state in (RUNNING, DRAINING) and not self._exited.is_set()

    # -- in process ---------------------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> Generator[tuple[int, Event], None, None]:
        """Run `requests` in the calling thread (no worker loop may run): (index, event) pairs as the steps
        produce them. A failed step raises what it raised; closing the iterator early cancels the requests
        still running (their slots are freed at the next turn, keeping what they prefilled for reuse)."""
        box: list[tuple[int, Event | Failed]] = []
        tickets = [self.submit(req, functools.partial(_tag, box, i)) for i, req in enumerate(requests)]
        running = set(range(len(tickets)))
        try:
            while running:
                if not self.turn() and not box:
                    raise RuntimeError("the engine has nothing to run, but requests are unfinished")
                events, box[:] = box[:], []
                for i, ev in events:
                    if isinstance(ev, Failed):
                        raise ev.error if ev.error is not None else RuntimeError(ev.message)
                    if ev.finish_reason is not None:
                        running.discard(i)
                    yield i, ev
        finally:
            for i in running:
                self.cancel(tickets[i])

    def turn(self) -> bool:
        """One turn of the loop in the calling thread (cancellations, seating, one step), its events delivered
        before it returns; False when there was nothing to run."""
        if self._thread is not None:
            raise RuntimeError("this engine runs its own worker loop")
        with self._turn_lock:
            self._run_calls()
            self._reap_cancelled()
            self._seat_waiting()
            ran = self._step()
            self._deliver()
            return ran

    def reset(self) -> None:
        """Forget the cached prefixes of the free slots (cancelled requests' slots are freed first)."""
        with self._turn_lock:
            self._reap_cancelled()
            self._deliver()
            for slot in self._slots:
                if slot.active is None:
                    slot.tokens.clear()

    # -- the thread running the engine --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._wait_for_work():
                self._run_calls()
                self._reap_cancelled()
                self._seat_waiting()
                self._step()
            self._deliver()
        except BaseException as exc:  # the loop itself broke: nothing can be served any more
            log.exception("engine worker died")
            self._die(f"{type(exc).__name__}: {exc}")
            return
        finally:
            with self._cond:
                calls, self._calls = list(self._calls), deque()
            for _, future in calls:
                future.set_exception(EngineStoppedError("the engine stopped"))
        with self._cond:
            self.state = STOPPED

    def _clock(self) -> float:
        """The engine's clock: seconds spent in steps (request timings are differences of it)."""
        t0 = self._step_t0
        return self._busy_s if t0 is None else self._busy_s + (time.perf_counter() - t0)

    def _post(self, ticket: Ticket, event: Event | Failed) -> None:
        """Queue an event for `_deliver`."""
        self._outbox.append((ticket, event))

    def _deliver(self) -> None:
        """Hand the queued events to their sinks, in order."""
        outbox, self._outbox = self._outbox, []
        for ticket, event in outbox:
            _emit(ticket, event)

    def _wait_for_work(self) -> bool:
        """Block until there is something to do; False when the engine should exit. With nothing running
        (no forward coming to deliver them first), queued events are delivered now."""
        if self._outbox and not (self._pending or any(slot.active for slot in self._slots)):
            self._deliver()
        with self._cond:
            while True:
                busy = any(slot.active for slot in self._slots)
                if self.state == DRAINING:
                    if not busy:
                        return False
                    if time.monotonic() >= self._drain_deadline:
                        self._cut_all()
                        return False
                    return True
                if busy or self._pending or self._calls:
                    return True
                if self.state != RUNNING:
                    return False
                self._cond.wait()

    def _run_calls(self) -> None:
        while True:
            with self._cond:
                if not self._calls:
                    return
                fn, future = self._calls.popleft()
            _settle(future, fn)

    def _reap_cancelled(self) -> None:
        for slot in self._slots:
            if slot.active is not None and slot.active.ticket.cancelled:
                self._finish(slot, FINISH_CANCELLED)

    def _seat_waiting(self) -> None:
        with self._cond:
            while self._pending and any(slot.active is None for slot in self._slots):
                ticket = self._pending.popleft()
                req = ticket.request
                slot, cached = pick_slot([slot for slot in self._slots if slot.active is None], req.prompt)
                del slot.tokens[cached:]
                self._sampler.set_row(slot.row, req.sampling)
                slot.active = Active(
                    ticket=ticket,
                    text=TextOutput(self.backend.tokenizer, req.stop),
                    stop_ids=self.backend.eos_ids if req.stop_token_ids is None else req.stop_token_ids,
                    max_new=min(req.max_tokens, self.n_ctx - len(req.prompt)),
                    cached=cached,
                    prefilled=cached,
                    t_seated=self._clock(),
                )

    def _step(self) -> bool:
        """One forward: a token for every decoding slot and, in the same batch, prompt chunks of the requests
        still prefilling, oldest first, `prefill_chunk` tokens in all. False when no slot needed one."""
        decoding = [s for s in self._slots if s.active and s.active.generated and not s.active.ticket.cancelled]
        prefilling = sorted((s for s in self._slots
                             if s.active and s.active.prefilled < len(s.active.ticket.request.prompt)),
                            key=lambda s: s.active.ticket.submitted)  # type: ignore[union-attr]
        chunks: list[tuple[Slot, list[int]]] = []
        budget = self.prefill_chunk
        for slot in prefilling:
            if budget == 0:
                break
            active = slot.active
            assert active is not None
            chunk = active.ticket.request.prompt[active.prefilled : active.prefilled + budget]
            chunks.append((slot, chunk))
            budget -= len(chunk)
        if not (decoding or chunks):
            return False
        self._guarded(decoding + [slot for slot, _ in chunks], lambda: self._forward(decoding, chunks))
        return True

    def _guarded(self, slots: list[Slot], work: Callable[[], None]) -> None:
        """Run one step on the engine's clock; if it raises, the requests in it fail, their slots are reset,
        the engine goes on."""
        self._step_t0 = time.perf_counter()
        try:
            work()
        except Exception as exc:
            log.error("engine step failed: %s: %s", type(exc).__name__, exc)
            for slot in slots:
                if slot.active is not None:
                    ticket = slot.active.ticket
                    slot.active = None
                    slot.tokens.clear()  # the row's cache contents are unknown now
                    slot.last_used = time.monotonic()
                    self._post(ticket, Failed(f"internal error in the engine: {type(exc).__name__}", exc))
        finally:
            self._busy_s += time.perf_counter() - self._step_t0
            self._step_t0 = None
            self.steps += 1
            if self.step_delay:  # the debug delay stands for a slow forward: this step's events go out first
                self._deliver()
                time.sleep(self.step_delay)

    def _forward(self, decoding: list[Slot], chunks: list[tuple[Slot, list[int]]]) -> None:
        ids = [[s.active.generated[-1]] for s in decoding] + [chunk for _, chunk in chunks]  # type: ignore[union-attr]
        rows = [s.row for s in decoding] + [slot.row for slot, _ in chunks]
        starts = [len(s.tokens) for s in decoding] + [slot.active.prefilled for slot, _ in chunks]  # type: ignore[union-attr]
        sampled, at = list(decoding), list(range(len(decoding)))  # slots that get a token, their logits' rows
        for i, (slot, chunk) in enumerate(chunks, start=len(decoding)):
            active = slot.active
            assert active is not None
            if active.prefilled + len(chunk) == len(active.ticket.request.prompt):
                sampled.append(slot)
                at.append(i)
        constraints = [s.active.ticket.request.constraint for s in sampled]  # type: ignore[union-attr]
        pending = self._step_masks().begin(constraints) if any(c is not None for c in constraints) else None
        self._deliver()
        logits = self.backend.forward(ids, rows, starts)  # [B, V]: decoding rows, then the chunks
        for slot in decoding:
            slot.tokens.append(slot.active.generated[-1])  # type: ignore[union-attr]
        for slot, chunk in chunks:
            slot.active.prefilled += len(chunk)  # type: ignore[union-attr]
            slot.tokens.extend(chunk)
        if not sampled:
            return
        mask = None
        if pending is not None:
            mask = self._step_masks().take(pending)  # int32 [len(sampled), W]
            dead = StepMasks.empty_rows(mask)
            if dead:  # a parser that failed allows nothing: its request ends, the others sample
                for j in dead:
                    self._fail(sampled[j], "the grammar allows no next token: "
                               f"{constraints[j].error or 'its parser is stuck'}")  # type: ignore[union-attr]
                keep = [j for j in range(len(sampled)) if j not in dead]
                sampled, at, mask = [sampled[j] for j in keep], [at[j] for j in keep], mask[keep]
                if not sampled:
                    return
        rows_logits = logits if len(at) == logits.shape[0] else logits[at]
        tokens = self._sampler.sample(rows_logits, [s.row for s in sampled], mask)
        logprobs = _logprobs(rows_logits, tokens, [s.active.ticket.request.logprobs for s in sampled])  # type: ignore[union-attr]
        for slot, token, logprob in zip(sampled, tokens, logprobs, strict=True):
            self._accept(slot, token, logprob)

    def _step_masks(self) -> StepMasks:
        """The mask computer, made when the first constrained request runs (llguidance is imported then)."""
        if self._masks is None:
            self._masks = StepMasks(self.backend.vocab_size)
        self._masks.overlap = self.mask_overlap
        return self._masks

    def _fail(self, slot: Slot, message: str) -> None:
        """End a running request with Failed(message) and free its slot (its cache row stays valid)."""
        active = slot.active
        assert active is not None
        slot.active = None
        slot.last_used = time.monotonic()
        self._post(active.ticket, Failed(message, RuntimeError(message)))

    def _accept(self, slot: Slot, token: int, logprob: TokenLogprob | None = None) -> None:
        """A newly sampled token: its event with the text now safe to show; the finish on a stop token, a stop
        string, a grammar that is complete, or the token budget."""
        active = slot.active
        assert active is not None
        now = self._clock()
        active.generated.append(token)
        if len(active.generated) == 1:
            active.t_first_token = now
        active.t_last_token = now
        if self.fail_at_token is not None and len(active.generated) == self.fail_at_token:
            raise InjectedFault(f"debug fault at token {self.fail_at_token}")
        if token in active.stop_ids:  # not part of the output
            self._finish(slot, FINISH_STOP, active.text.flush()[0])
            return
        constraint = active.ticket.request.constraint
        if constraint is not None:
            try:
                constraint.advance(token)
            except GrammarViolation as exc:  # this request alone fails; the batch goes on
                self._fail(slot, str(exc))
                return
        text, stopped = active.text.push(token)
        if stopped or (constraint is not None and constraint.done):  # a complete grammar ends it as a stop would
            if not stopped:
                tail, _ = active.text.flush()
                text += tail
            self._finish(slot, FINISH_STOP, text, token, logprob)
        elif len(active.generated) >= active.max_new:
            tail, stopped = active.text.flush()
            self._finish(slot, FINISH_STOP if stopped else FINISH_LENGTH, text + tail, token, logprob)
        else:
            self._post(active.ticket, Event(text, token, logprob=logprob))

    def _finish(self, slot: Slot, reason: FinishReason, text: str = "", token: int | None = None,
                logprob: TokenLogprob | None = None) -> None:
        """Free the slot; the request's last event (with `text` and `token`, if any), usage and timings."""
        active = slot.active
        assert active is not None
        slot.active = None
        slot.last_used = time.monotonic()
        n = len(active.generated)
        prefill_end = active.t_first_token if n else self._clock()
        timings = Timings((prefill_end - active.t_seated) * 1000.0,
                          (active.t_last_token - active.t_first_token) * 1000.0 if n else 0.0, max(0, n - 1))
        usage = Usage(len(active.ticket.request.prompt), active.cached, n)
        self._post(active.ticket, Event(text, token, reason, usage, timings, logprob))

    def _cut_all(self) -> None:
        for slot in self._slots:
            if slot.active is not None:
                text, stopped = slot.active.text.flush()
                self._finish(slot, FINISH_STOP if stopped else FINISH_LENGTH, text)

    def _die(self, why: str) -> None:
        self._deliver()  # what the steps before produced goes out first
        with self._cond:
            self.state = DEAD
            self.error = why
            victims = list(self._pending) + [s.active.ticket for s in self._slots if s.active]
            self._pending.clear()
            for slot in self._slots:
                slot.active = None
                slot.tokens.clear()
        for ticket in victims:
            _emit(ticket, Failed("the engine stopped working; the server needs a restart"))


def _logprobs(logits: torch.Tensor, tokens: list[int], wanted: list[int | None]) -> list[TokenLogprob | None]:
    """Each row's TokenLogprob where its request asked (wanted[b] = k alternatives), else None; logits [B, V]."""
    out: list[TokenLogprob | None] = [None] * len(tokens)
    rows = [b for b, k in enumerate(wanted) if k is not None]
    if not rows:
        return out
    logp = torch.log_softmax(logits[rows].float(), dim=-1)  # [b, V]
    k = max(wanted[b] or 0 for b in rows)
    top_v, top_i = logp.topk(k, dim=-1) if k else (logp[:, :0], logp[:, :0].long())  # [b, k]
    for j, b in enumerate(rows):
        n = wanted[b] or 0
        top = tuple(zip(top_i[j, :n].tolist(), top_v[j, :n].tolist(), strict=True))
        out[b] = TokenLogprob(float(logp[j, tokens[b]]), top)
    return out


def _unstarted(ticket: Ticket, reason: FinishReason) -> Event:
    """The finish of a request that never ran (withdrawn or dropped while queued)."""
    return Event("", None, reason, Usage(len(ticket.request.prompt), 0, 0), NO_TIMINGS)


def _settle(future: Future[Any], fn: Callable[[], Any]) -> None:
    """Run fn into future: its result, or the exception it raised."""
    try:
        future.set_result(fn())
    except Exception as exc:
        future.set_exception(exc)


def _tag(box: list[tuple[int, Event | Failed]], index: int, event: Event | Failed) -> None:
    box.append((index, event))


def _emit(ticket: Ticket, event: Event | Failed) -> None:
    try:
        ticket.sink(event)
    except Exception:  # a broken sink must not take the engine down
        log.exception("request event sink failed")
