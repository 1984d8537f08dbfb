"""A run's logs: metrics as JSONL and TensorBoard events, a loss-curve PNG at the end, a line per log step.

    OUT/metrics.jsonl   one JSON object per event: {"event": "train", "step", "loss", "lr", "grad_norm",
                        "tokens", "tokens_per_s", "mfu", "elapsed_s"}, {"event": "val", "step", "loss",
                        "perplexity"}, and {"event": "start"/"stop"/"end", ...}; appended, so a resumed run
                        continues the same file
    OUT/tensorboard/    event files (`tensorboard --logdir OUT/tensorboard`): train/loss, train/lr, ...
    OUT/loss.png        train and validation loss over the steps, redrawn from metrics.jsonl at the end

TensorBoard and matplotlib come with the `train` extra (`pip install 'cb[ulm,train]'`); without them the
run goes on and says once what it left out. Only rank 0 makes a RunLog; `Console` shows the progress.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
LOSS_PNG = "loss.png"


class RunLog:
    """Appends events to metrics.jsonl and scalars to TensorBoard."""

    def __init__(self, out: Path, tensorboard: bool = True) -> None:
        self.out = out
        self.fh: TextIO = open(out / METRICS, "a", encoding="utf-8")  # noqa: SIM115 (open for the run; close())
        self.tb: Any = None
        self.notes: list[str] = []
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.notes.append("no TensorBoard event files: `pip install tensorboard` for them")
            else:
                self.tb = SummaryWriter(str(out / TENSORBOARD))

    def write(self, event: str, **values: Any) -> None:
        self.fh.write(json.dumps({"event": event, **values}) + "\n")
        self.fh.flush()
        if self.tb is not None and "step" in values:
            for key, value in values.items():
                if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{event}/{key}", value, values["step"])

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(out: Path) -> list[dict[str, Any]]:
    """Every event of OUT/metrics.jsonl."""
    path = out / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_losses(out: Path) -> Path | None:
    """Draw OUT/loss.png from metrics.jsonl; None (and nothing drawn) without matplotlib or any loss."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    events = read_metrics(out)
    train = {e["step"]: e["loss"] for e in events if e["event"] == "train"}  # a resumed step: its last value
    val = {e["step"]: e["loss"] for e in events if e["event"] == "val"}
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(list(train), list(train.values()), label="train", linewidth=1)
    if val:
        ax.plot(list(val), list(val.values()), "o-", label="validation", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / LOSS_PNG
    fig.savefig(path)
    plt.close(fig)
    return path


def console_line(record: dict[str, Any], steps: int) -> str:
    """The one-line summary of a train or val event."""
    if record.get("event") == "val":
        return f"step {record['step']:>6}/{steps}  val loss {record['loss']:.4f}  ppl {record['perplexity']:.2f}"
    mfu = f"  MFU {100 * record['mfu']:.1f}%" if record.get("mfu") == record.get("mfu") else ""  # NaN: unknown peak
    return (f"step {record['step']:>6}/{steps}  loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
            f"grad {record['grad_norm']:.2f}  {record['tokens_per_s']:,.0f} tok/s{mfu}")


class Console:
    """Progress on stderr: a rich bar over the steps on a terminal (the last log line beside it), plain log
    lines in a pipe. stdout stays for the final summary."""

    def __init__(self, steps: int, start: int, enabled: bool = True) -> None:
        self.enabled, self.bar, self.task = enabled, None, None
        if enabled and sys.stderr.isatty():
            from rich.console import Console as RichConsole
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=RichConsole(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task("train", total=steps, completed=start)

    def step(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
