"""The training loop of `ulm train`: one function, `run_training(spec)`, the same under torchrun.

1. Join the process group (distributed.py); open the dataset; a fresh run refuses an OUT that already holds
   one, a resumed run (`resume`) reads the newest checkpoint and checks it was trained on the same data.
2. The model: the checkpoint's weights (resume), another model's (`init`: `ulm train --init DIR`), or a
   seeded initialisation; a dataset vocabulary larger than the config's widens it (to a multiple of 64),
   and the dataset's BOS/EOS ids fill a config that has none.
3. AdamW (optim.py); LossModule (step.py), DDP-wrapped under torchrun (gradients all-reduced once per step,
   no buffer broadcasts: the rotary tables are the same everywhere), then torch.compile'd when asked (the
   default on GPU).
4. Each step: this rank's micro-batches (batches.py), `optimizer_step`; every log_every steps the global
   loss, gradient norm, tokens/s and MFU (flops.py) go to the logs (logs.py), every eval_every steps the
   validation loss, every save_every steps a checkpoint (checkpoint.py).
5. A SIGINT/SIGTERM, `stop_at` or `time_limit_s` ends the run cleanly after the current step with a
   checkpoint, so `--resume` continues it exactly. At the end: validation, checkpoint, loss.png.

Only rank 0 writes; every rank runs the same steps on its own slice of each global batch.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ulm.config import ConfigError, ModelConfig
from ulm.data.dataset import Dataset, open_dataset
from ulm.data.errors import DataError
from ulm.train import checkpoint
from ulm.train.batches import IGNORE, WindowSampler
from ulm.train.config import RunConfig, TrainConfig
from ulm.train.distributed import Dist, all_sum, any_rank, setup, teardown
from ulm.train.flops import flops_per_token, mfu, peak_flops
from ulm.train.init import load_init, model_from_state, new_model
from ulm.train.logs import Console, RunLog, console_line, plot_losses
from ulm.train.optim import build_optimizer, lr_at
from ulm.train.step import LossModule, evaluate, optimizer_step

# What may change when a run is resumed: how long, where, how fast and how often; not what it computes.
RESUMABLE_CHANGES = ("steps", "device", "dtype", "compile", "micro_batch", "eval_every", "eval_sequences",
                     "log_every", "save_every", "keep_checkpoints")
VOCAB_MULTIPLE = 64


@dataclass(frozen=True)
class RunSpec:
    """One invocation of `ulm train`."""

    data: Path
    out: Path
    run: RunConfig | None = None  # the run to start; None when resuming (the checkpoint has it)
    init: str | None = None  # start from this model's weights (and shape)
    resume: bool = False
    resume_changes: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields changed on resume
    stop_at: int | None = None  # stop (with a checkpoint) after this step
    time_limit_s: float | None = None  # stop (with a checkpoint) after this long
    quiet: bool = False  # no console lines (the logs are still written)


def fit_to_dataset(config: ModelConfig, dataset: Dataset) -> tuple[ModelConfig, list[str]]:
    """The config widened to the dataset's vocabulary and given its BOS/EOS ids where it has none."""
    notes, tok = [], dataset.manifest["tokenizer"]
    if dataset.vocab_size > config.vocab_size:
        wider = -(-dataset.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        notes.append(f"vocabulary widened from {config.vocab_size} to {wider} for the dataset's tokenizer")
        config = config.with_(vocab_size=wider)
    if not config.eos_token_ids:
        eos = [i for i in (tok.get("eos_id"), tok.get("separator_id")) if i is not None]
        bos = config.bos_token_id if config.bos_token_id is not None else tok.get("bos_id")
        config = config.with_(eos_token_ids=tuple(dict.fromkeys(eos)), bos_token_id=bos)
    return config, notes


def _resumed_run(saved: RunConfig, changes: dict[str, Any]) -> RunConfig:
    refused = sorted(k for k, v in changes.items() if k not in RESUMABLE_CHANGES and getattr(saved.train, k) != v)
    if refused:
        raise ConfigError(f"cannot change {', '.join(refused)} when resuming (only {', '.join(RESUMABLE_CHANGES)})")
    return RunConfig(saved.model, saved.train.with_(**changes), saved.preset)


def _dataset_id(dataset: Dataset) -> dict[str, Any]:
    return {"dir": str(dataset.directory), "tokenizer_id": dataset.manifest["tokenizer"]["id"],
            "train_tokens": dataset.train.n_tokens}


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, bool]]:
    """A flag set by SIGINT/SIGTERM (a second SIGINT interrupts at once)."""
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: no handlers
        yield flag
        return
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class _Run:
    """The state of a run in progress."""

    spec: RunSpec
    dist: Dist
    dataset: Dataset
    run: RunConfig
    model: Any
    optimizer: torch.optim.Optimizer
    inner: torch.nn.Module  # what validation runs: `module` on a GPU, the eager LossModule on CPU (see _build)
    module: torch.nn.Module  # LossModule, DDP-wrapped under torchrun, then compiled when asked
    bf16: bool
    step: int = 0
    sequences: int = 0
    elapsed_s: float = 0.0
    log: RunLog | None = None
    console: Console | None = None
    last_val: float | None = None
    speeds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def train(self) -> TrainConfig:
        return self.run.train

    def trainer_state(self) -> dict[str, Any]:
        return {"step": self.step, "sequences": self.sequences, "tokens": self.sequences * self.train.seq_len,
                "run": self.run.to_dict(), "dataset": _dataset_id(self.dataset), "world_size": self.dist.world,
                "init": self.spec.init, "elapsed_s": self.elapsed_s}

    def save(self) -> None:
        if self.dist.main:
            checkpoint.save(self.spec.out, self.step, self.model, self.optimizer, self.trainer_state(),
                            self.dataset.tokenizer_dir, self.train.keep_checkpoints)

    def emit(self, event: str, **values: Any) -> None:
        if self.log is not None:
            self.log.write(event, **values)
        if self.console is not None and event in ("train", "val"):
            self.console.line(console_line({"event": event, **values}, self.train.steps))

    def validate(self, sampler: WindowSampler) -> None:
        if sampler.n_windows == 0:
            return
        batches = sampler.eval_batches(self.train.eval_sequences, self.train.micro_batch, self.dist.rank,
                                       self.dist.world)
        total, count = evaluate(self.inner, batches, self.dist.device, self.bf16)
        total, count = all_sum(total, self.dist), all_sum(count, self.dist)
        self.last_val = float(total.item() / max(1.0, count.item()))
        self.emit("val", step=self.step, loss=self.last_val, perplexity=math.exp(min(self.last_val, 50.0)))


def _build(spec: RunSpec, d: Dist) -> _Run:
    dataset = open_dataset(spec.data)
    restored, notes = None, []
    if spec.resume:
        found = checkpoint.latest(spec.out)
        if found is None:
            raise DataError(f"{spec.out}: no checkpoint to resume from")
        restored = checkpoint.restore(found)
        if restored.trainer["dataset"]["tokenizer_id"] != dataset.manifest["tokenizer"]["id"] or \
                restored.trainer["dataset"]["train_tokens"] != dataset.train.n_tokens:
            raise DataError(f"{spec.data}: not the dataset the checkpoint was trained on "
                            f"({restored.trainer['dataset']['dir']}); resume with that one")
        run = _resumed_run(RunConfig.from_dict(restored.trainer["run"]), spec.resume_changes)
        model = model_from_state(run.model, restored.weights, d.device)
    else:
        found = checkpoint.latest(spec.out)
        if found is not None:
            raise DataError(f"{spec.out}: already holds a run ({found.name}); add --resume to continue it, "
                            "or pick another --out")
        if spec.run is None:
            raise ConfigError("no run config given")
        run = spec.run
        if spec.init is not None:
            init_config, model = load_init(spec.init, d.device)
            run = RunConfig(init_config, run.train, run.preset)
        config, notes = fit_to_dataset(run.model, dataset)
        if spec.init is not None and config.vocab_size != run.model.vocab_size:
            raise DataError(f"--init {spec.init}: its vocabulary ({run.model.vocab_size}) is smaller than the "
                            f"dataset's tokenizer ({dataset.vocab_size}); build the data with its tokenizer")
        if spec.init is None:
            model = new_model(config, d.device, run.train.init_std, run.train.seed)
        else:
            model.config = config  # same shape; the BOS/EOS ids filled in
        run = RunConfig(config, run.train, run.preset)
    train = run.train
    if train.seq_len > run.model.max_seq_len:
        raise ConfigError(f"train.seq_len {train.seq_len} is longer than the model's context {run.model.max_seq_len}")
    train.grad_accum(d.world)  # the global batch must split over the ranks
    bf16 = train.dtype == "bf16" or (train.dtype == "auto" and d.device.type == "cuda")
    optimizer = build_optimizer(model, train, d.device)
    eager: torch.nn.Module = LossModule(model)
    module = eager
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(eager, device_ids=[d.device.index] if d.device.type == "cuda" else None,
                                         broadcast_buffers=False)
    if train.compile if train.compile is not None else d.device.type == "cuda":
        # Compiling DDP (not DDP around a compiled module) lets DDP's optimizer split the graph at its gradient
        # buckets, so the all-reduce of one bucket overlaps the backward of the next.
        module = torch.compile(module)
    # Validation runs without grad, where a CPU model takes µLM's native kernels, which compiled graphs break on.
    inner = module if d.device.type == "cuda" else eager
    state = _Run(spec, d, dataset, run, model, optimizer, inner, module, bf16, notes=notes)
    if restored is not None:
        optimizer.load_state_dict(restored.optimizer)
        checkpoint.set_rng_state(restored.rng)
        state.step, state.sequences = restored.trainer["step"], restored.trainer["sequences"]
        state.elapsed_s = restored.trainer.get("elapsed_s", 0.0)
    return state


def run_training(spec: RunSpec) -> dict[str, Any]:
    """Run (or resume) a training run; its summary (see the end of this function)."""
    d = setup(_device_choice(spec))
    finished = False
    try:
        summary = _loop(_build(spec, d))
        finished = True
        return summary
    finally:
        teardown(d, finished)


def _device_choice(spec: RunSpec) -> str:
    if spec.resume:
        return str(spec.resume_changes.get("device", "auto"))
    return spec.run.train.device if spec.run is not None else "auto"


def _loop(r: _Run) -> dict[str, Any]:
    d, train, spec = r.dist, r.train, r.spec
    T, B = train.seq_len, train.batch_size
    sampler = WindowSampler(r.dataset.train, T, train.seed, train.use_mask)
    sampler.require("training")
    val_sampler = WindowSampler(r.dataset.val, T, 0, train.use_mask)
    fpt = flops_per_token(r.model.config, T)
    peak, peak_source = peak_flops(d.device, r.bf16)
    if d.main:
        spec.out.mkdir(parents=True, exist_ok=True)
        r.log = RunLog(spec.out)
        r.console = Console(train.steps, r.step, enabled=not spec.quiet)
        short = [] if val_sampler.n_windows else ["no validation: the val split is shorter than one sequence"]
        for note in r.notes + r.log.notes + short:
            r.console.line(f"note: {note}")
        r.log.write("start", step=r.step, world_size=d.world, device=str(d.device), bf16=r.bf16,
                    params=r.model.config.n_params(), flops_per_token=fpt, peak_flops=peak, peak_source=peak_source,
                    run=r.run.to_dict(), resumed=spec.resume)
    started = time.monotonic()
    stop_reason = None
    with _stop_on_signals() as signalled:
        t0, interval_steps = time.perf_counter(), 0
        while r.step < train.steps:
            batches = sampler.train_step(r.sequences, B, train.micro_batch, d.rank, d.world)
            n_targets = B * T
            if train.use_mask:
                local = torch.tensor([float(sum(int((t != IGNORE).sum()) for _, t in batches))], device=d.device)
                n_targets = int(all_sum(local, d).item())
            loss_sum, norm = optimizer_step(r.module, r.optimizer, batches, n_targets, d.world, lr_at(r.step, train),
                                            train.grad_clip, d.device, r.bf16)
            r.step, r.sequences, interval_steps = r.step + 1, r.sequences + B, interval_steps + 1
            last = r.step == train.steps
            if r.console is not None:
                r.console.step(r.step)
            if r.step % train.log_every == 0 or last:
                loss = float(all_sum(loss_sum.clone(), d).item()) / max(1, n_targets)
                dt = time.perf_counter() - t0
                tok_s = interval_steps * B * T / dt
                r.speeds.append(tok_s)
                r.elapsed_s += dt
                r.emit("train", step=r.step, loss=loss, lr=lr_at(r.step - 1, train), grad_norm=float(norm),
                       tokens=r.sequences * T, tokens_per_s=tok_s, mfu=mfu(tok_s / d.world, fpt, peak),
                       elapsed_s=r.elapsed_s, **_memory(d))
                t0, interval_steps = time.perf_counter(), 0
            if last or (train.eval_every and r.step % train.eval_every == 0):
                r.validate(val_sampler)
                t0, interval_steps = time.perf_counter(), 0
            stop_reason = _stop_reason(r, signalled["stop"], started, last)
            if last or stop_reason or (train.save_every and r.step % train.save_every == 0):
                r.save()
                t0, interval_steps = time.perf_counter(), 0
            if stop_reason:
                break
    return _finish(r, stop_reason)


def _stop_reason(r: _Run, signalled: bool, started: float, last: bool) -> str | None:
    """Why the run stops before its last step (None: it goes on)."""
    if last:
        return None
    spec, d = r.spec, r.dist
    if spec.stop_at is not None and r.step >= spec.stop_at:
        return f"--stop-at {spec.stop_at}"
    if d.enabled and r.step % r.train.log_every:  # ranks agree on signals and time only at log steps
        return None
    timed_out = spec.time_limit_s is not None and time.monotonic() - started >= spec.time_limit_s
    if any_rank(signalled, d):
        return "a signal"
    if any_rank(timed_out, d):
        return f"--time-limit {spec.time_limit_s:g}s"
    return None


def _memory(d: Dist) -> dict[str, float]:
    if d.device.type != "cuda":
        return {}
    return {"max_memory_gib": torch.cuda.max_memory_allocated(d.device) / 2**30}


def _finish(r: _Run, stop_reason: str | None) -> dict[str, Any]:
    speeds = sorted(r.speeds[1:] or r.speeds)  # the first interval holds compilation and warm-up
    median = speeds[len(speeds) // 2] if speeds else float("nan")
    fpt = flops_per_token(r.model.config, r.train.seq_len)
    peak, _ = peak_flops(r.dist.device, r.bf16)
    summary = {"out": str(r.spec.out), "step": r.step, "steps": r.train.steps, "stopped": stop_reason,
               "val_loss": r.last_val, "tokens_per_s": median, "mfu": mfu(median / r.dist.world, fpt, peak),
               "world_size": r.dist.world}
    if r.log is not None:
        r.log.write("stop" if stop_reason else "end", **summary)
        r.log.close()
        png = None if stop_reason else plot_losses(r.spec.out)
        if png is not None:
            summary["loss_png"] = str(png)
    if r.console is not None:
        r.console.close()
    return summary
