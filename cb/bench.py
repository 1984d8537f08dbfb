"""`cb bench`: how fast cb starts and how much it adds to a model round trip, each next to its anchor.

1. `cb --help` wall time against a minimal two-command Typer app's `--help`, in the same venv and run,
   interleaved (target: cb ≤ 1.5× the minimal app).
2. A one-shot `cb "hi"` round trip (process start to exit, one answer token) against a warm server, next to
   that server's own time to first token for the very same messages sent directly over HTTP (target: cb's
   overhead beyond the server's TTFT ≤ 250 ms). As the server's TTFT varies from request to request on a
   busy machine, each run's overhead is also printed against the TTFT that cb itself saw on that request
   (`--json`'s ttft_ms), which takes the server's share out of every sample.

Each is run `runs` times; min and median are printed side by side. Nothing here asserts a speed: the
numbers are for reading (the machines are shared and noisy).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MINIMAL_APP = '''import typer

app = typer.Typer()


@app.command()
def hello(name: str) -> None:
    """Say hello."""
    print(f"hello {name}")


@app.command()
def bye() -> None:
    """Say bye."""
    print("bye")


app()
'''


def _wall(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """(seconds from start to exit, stdout) of a command that must succeed."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return took, done.stdout


def _row(label: str, samples: list[float]) -> str:
    return f"  {label:<34} min {min(samples) * 1000:7.1f} ms   median {statistics.median(samples) * 1000:7.1f} ms"


def bench_help(runs: int, work: Path) -> tuple[list[float], list[float]]:
    """(cb --help, minimal Typer app --help) wall times, interleaved."""
    script = work / "minimal_app.py"
    script.write_text(MINIMAL_APP)
    cb = str(Path(sys.executable).parent / "cb")
    env = {**os.environ}
    cb_times, typer_times = [], []
    _wall([cb, "--help"], env, work)  # warm the page cache for both before timing
    _wall([sys.executable, str(script), "--help"], env, work)
    for _ in range(runs):
        cb_times.append(_wall([cb, "--help"], env, work)[0])
        typer_times.append(_wall([sys.executable, str(script), "--help"], env, work)[0])
    return cb_times, typer_times


def _ttft(base_url: str, api_key: str, model: str, messages: list[dict[str, str]]) -> float:
    """The server's time to the first answer token (its whole answer if that is empty), on a new connection."""
    from cb.backend import Backend, Done

    with Backend(base_url, api_key, model) as backend:
        for event in backend.chat(messages, max_tokens=1, temperature=0.0):
            if isinstance(event, Done):
                return event.ttft_s if event.ttft_s is not None else event.total_s
    raise RuntimeError("the server sent no answer")


def bench_round_trip(runs: int, work: Path) -> tuple[list[float], list[float], list[float], str]:
    """(cb "hi" wall times, the server's TTFT for the same messages, each cb run's wall time less the TTFT
    it saw, the base URL used)."""
    from cb import config, session
    from cb.chat import Chat
    from cb.render import Out

    project = work / "project"
    project.mkdir(exist_ok=True)
    env = {**os.environ, "CB_MAX_TOKENS": "1", "CB_TEMPERATURE": "0"}
    settings = config.load({"max_tokens": 1, "temperature": 0.0}, cwd=project)
    cb = str(Path(sys.executable).parent / "cb")
    cwd = Path.cwd()
    os.chdir(project)
    try:
        with Chat(settings, session.current(project), Out()) as chat:
            backend = chat.backend()  # starts the local server if needed (not timed)
            built = chat.assemble("hi", history=[])
            anchor = (backend.base_url, settings.api_key, backend.model, built.messages)
            _ttft(*anchor)  # warm: the prompt's prefix is now cached, as for a warm cb
            argv = [cb, "hi", "--fresh", "--json"]
            _wall(argv, env, project)
            cb_times, ttfts, beyond = [], [], []
            for _ in range(runs):
                took, out = _wall(argv, env, project)
                cb_times.append(took)
                seen = json.loads(out)["usage"]["ttft_ms"]
                if seen is not None:
                    beyond.append(took - seen / 1000)
                ttfts.append(_ttft(*anchor))
    finally:
        os.chdir(cwd)
    return cb_times, ttfts, beyond, backend.base_url


def run(runs: int = 10, round_trip: bool = True) -> str:
    """Run the benchmarks; return the report."""
    lines = [f"cb bench ({runs} runs each, interleaved; python {sys.version.split()[0]})", ""]
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as tmp:
        work = Path(tmp)
        cb_help, typer_help = bench_help(runs, work)
        ratio = statistics.median(cb_help) / statistics.median(typer_help)
        lines += ["start-up: --help wall time", _row("cb --help", cb_help),
                  _row("minimal Typer app --help (anchor)", typer_help),
                  f"  ratio of medians: {ratio:.2f}x (target <= 1.5x)", ""]
        if round_trip:
            cb_rt, ttft, beyond, url = bench_round_trip(runs, work)
            overhead = statistics.median(cb_rt) - statistics.median(ttft)
            lines += [f"one-shot round trip against a warm server ({url}), 1 answer token",
                      _row('cb "hi" (process start to exit)', cb_rt), _row("server TTFT, same messages (anchor)", ttft),
                      f"  overhead (median - median): {overhead * 1000:.0f} ms; "
                      f"(min - min): {(min(cb_rt) - min(ttft)) * 1000:.0f} ms (target <= 250 ms)"]
            if beyond:
                lines.append(_row("overhead per run (cb's own TTFT out)", beyond))
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
