"""`ulm bench serve`: drive a running `ulm serve` (or one it starts) with concurrent streaming clients.

For each concurrency level (default 1, 4, 16) every client streams `requests` chat completions one after
another, each with its own prompt, on its own kept-alive connection; reported per level: aggregate
generated tokens/s (all clients' tokens over the level's wall time), TTFT p50/p99 (request sent → first
content) and per-token latency p50/p99 (gaps between content chunks, spread over the tokens they carry).
The levels run in `rounds` rounds (1, 4, 16, 1, 4, 16, ...), so a noisy spell of a shared machine hits
every level alike; tokens/s is each level's median over the rounds, the latencies pool all rounds' samples.
Then the second turn of a chat, whose prompt extends the first turn's: TTFT when the server reuses the
cached prefix, and when it cannot (the same prompt with a different first character, so no cached prefix
matches: a cold start of that context). `context` sizes the first turn's system prompt in tokens (code, as
a file cb has open; counted with the server's /tokenize): e.g. 1000 for a cb chat turn's usual context.
The "anchor" ratios printed with the numbers: 4 clients' aggregate tokens/s over 1 client's
(the ratio of the medians, and each round's), and reuse TTFT over no-reuse TTFT.

The clients are `SSEConnection`s (stdlib asyncio, about half httpx's CPU a token), since they share the
machine with the server they measure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from ulm.bench.sse_client import SSEConnection

T = TypeVar("T")

TOPICS = ["a lighthouse keeper", "a lost robot", "the first city on Mars", "a dragon who bakes bread",
          "an old clock", "a river that flows uphill", "a chess tournament", "a forgotten library",
          "a storm at sea", "a village of inventors", "a talking cat", "a desert caravan", "a train at midnight",
          "a garden on the moon", "a painter who sees music", "a mountain monastery"]
FIRST_TURN_SYSTEM = ("You are a patient assistant who answers questions about software engineering with "
                     "care, giving concrete examples. ") * 6


@dataclass
class Sample:
    ttft: float
    token_gaps: list[float] = field(default_factory=list)
    tokens: int = 0


@dataclass
class Level:
    clients: int
    samples: list[Sample]
    wall: float

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.wall if self.wall > 0 else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def stream_chat(conn: SSEConnection, messages: list[dict[str, str]], max_tokens: int,
                      model: str | None) -> Sample:
    body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": 0.7, "seed": 1,
                            "stream": True, "stream_options": {"include_usage": True}}
    if model:
        body["model"] = model
    t0 = time.perf_counter()
    sample: Sample | None = None
    last = t0
    async for data in conn.events("/v1/chat/completions", body):
        if data == b"[DONE]":
            continue
        chunk = json.loads(data)
        if "error" in chunk:
            raise RuntimeError(f"the stream failed: {chunk['error'].get('message')}")
        if chunk.get("usage"):
            if sample is None:
                sample = Sample(ttft=time.perf_counter() - t0)
            sample.tokens = chunk["usage"]["completion_tokens"]
            continue
        if not chunk["choices"] or not chunk["choices"][0]["delta"].get("content"):
            continue
        now = time.perf_counter()
        if sample is None:
            sample = Sample(ttft=now - t0)
        else:
            sample.token_gaps.append(now - last)
        last = now
    if sample is None:
        raise RuntimeError("the stream ended without content or usage")
    return sample


async def run_level(base: str, headers: dict[str, str], clients: int, requests: int, max_tokens: int,
                    model: str | None) -> Level:
    async def one_client(i: int) -> list[Sample]:
        conn = SSEConnection(base, headers)
        try:
            out = []
            for r in range(requests):
                topic = TOPICS[(i * requests + r) % len(TOPICS)]
                messages = [{"role": "user", "content": f"Write a long, detailed story about {topic}. ({i}.{r})"}]
                out.append(await stream_chat(conn, messages, max_tokens, model))
            return out
        finally:
            await conn.close()

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one_client(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    return Level(clients, [s for batch in results for s in batch], wall)


async def system_prompt(client: httpx.AsyncClient, context: int | None) -> str:
    """The first turn's system prompt: the built-in one, or an open code file of about `context` tokens."""
    if context is None:
        return FIRST_TURN_SYSTEM
    from ulm.bench.texts import CODE

    head = "You are a coding assistant. The user has this file open:\n\n"
    text = head + CODE * (1 + context * 5 // len(CODE))  # surely more than `context` tokens
    tokens = (await client.post("/tokenize", json={"content": text})).json()["tokens"]
    return str((await client.post("/detokenize", json={"tokens": tokens[:context]})).json()["content"])


async def second_turn(base: str, headers: dict[str, str], repeats: int, model: str | None,
                      context: int | None = None) -> tuple[list, list, int]:
    """TTFTs of a second chat turn with the first turn cached, and of the same prompt with nothing cached;
    and the second turn's prompt tokens."""
    reuse, fresh, prompt_tokens = [], [], 0

    async def ttft(messages: list[dict[str, str]]) -> float:
        conn = SSEConnection(base, headers)  # its own: one kept alive through a long first turn may time out
        try:
            return (await stream_chat(conn, messages, 4, model)).ttft
        finally:
            await conn.close()

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as client:
        system = await system_prompt(client, context)
        for r in range(repeats):
            first = [{"role": "system", "content": system},
                     {"role": "user", "content": f"Question {r}: explain what a race condition is, with an example."}]
            body = {"messages": first, "max_tokens": 48, "temperature": 0}
            if model:
                body["model"] = model
            answer = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"]["content"]
            second = [*first, {"role": "assistant", "content": answer},
                      {"role": "user", "content": "And how would you prevent it in Python?"}]
            reuse.append(await ttft(second))
            busted = [{"role": "system", "content": "#" + system[1:]}, *second[1:]]
            fresh.append(await ttft(busted))
        body = {"messages": second, "max_tokens": 1, "temperature": 0, **({"model": model} if model else {})}
        prompt_tokens = (await client.post("/v1/chat/completions", json=body)).json()["usage"]["prompt_tokens"]
    return reuse, fresh, prompt_tokens


def spawn_server(serve_args: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "ulm", "serve", "--port", "0", *serve_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.stdout is not None
    match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
    if not match:
        proc.kill()
        raise RuntimeError("ulm serve did not start (run it by hand to see why)")
    base = match.group(1)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ulm serve exited with {proc.returncode} while loading")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("ulm serve did not become ready within 300 s")


def _run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop where it is installed (a ulm dependency on POSIX): less of the clients' CPU taken
    from the server they share the machine with."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run(base: str, api_key: str | None, levels: list[int], requests: int, max_tokens: int, repeats: int,
        rounds: int = 3, echo: Any = print, context: int | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    info = httpx.get(base + "/v1/models", headers=headers, timeout=10).json()["data"][0]
    model = info["id"]
    echo(f"warming up {model} at {base} ...", err=True)
    _run(run_level(base, headers, 1, 1, 8, model))
    runs: dict[int, list[Level]] = {clients: [] for clients in levels}
    for r in range(rounds):
        for clients in levels:
            echo(f"round {r + 1}/{rounds}: {clients} concurrent client(s) × {requests} request(s) of up to "
                 f"{max_tokens} tokens ...", err=True)
            runs[clients].append(_run(run_level(base, headers, clients, requests, max_tokens, model)))
    results: dict[str, Any] = {"model": model, "rounds": rounds, "levels": {}}
    for clients, done in runs.items():
        samples = [s for level in done for s in level.samples]
        gaps = [g for s in samples for g in s.token_gaps]
        results["levels"][clients] = {
            "requests": len(done[0].samples), "tokens": done[0].tokens,
            "wall_s": round(statistics.median(level.wall for level in done), 2),
            "tok_per_s": round(statistics.median(level.tok_per_s for level in done), 1),
            "tok_per_s_rounds": [round(level.tok_per_s, 1) for level in done],
            "ttft_p50_ms": round(percentile([s.ttft for s in samples], 0.5) * 1000, 1),
            "ttft_p99_ms": round(percentile([s.ttft for s in samples], 0.99) * 1000, 1),
            "token_p50_ms": round(percentile(gaps, 0.5) * 1000, 1),
            "token_p99_ms": round(percentile(gaps, 0.99) * 1000, 1),
        }
    echo("second chat turn, with and without prefix reuse ...", err=True)
    reuse, fresh, prompt_tokens = _run(second_turn(base, headers, repeats, model, context))
    results["second_turn"] = {"reuse_ttft_ms": round(statistics.median(reuse) * 1000, 1),
                              "no_reuse_ttft_ms": round(statistics.median(fresh) * 1000, 1),
                              "prompt_tokens": prompt_tokens}
    return results


def render(results: dict[str, Any]) -> str:
    lines = [f"ulm bench serve: {results['model']}", "",
             f"{'clients':>7} {'requests':>8} {'tokens':>7} {'wall s':>7} {'tok/s':>7} {'TTFT p50':>9} "
             f"{'TTFT p99':>9} {'tok p50':>8} {'tok p99':>8}"]
    levels = results["levels"]
    for clients, r in levels.items():
        lines.append(f"{clients:>7} {r['requests']:>8} {r['tokens']:>7} {r['wall_s']:>7} {r['tok_per_s']:>7} "
                     f"{r['ttft_p50_ms']:>7}ms {r['ttft_p99_ms']:>7}ms {r['token_p50_ms']:>6}ms "
                     f"{r['token_p99_ms']:>6}ms")
    if 1 in levels and 4 in levels and levels[1]["tok_per_s"]:
        ratio = levels[4]["tok_per_s"] / levels[1]["tok_per_s"]
        each = " ".join(f"{four / one:.2f}x" for one, four in
                        zip(levels[1]["tok_per_s_rounds"], levels[4]["tok_per_s_rounds"], strict=True) if one)
        lines.append(f"\naggregate tok/s, 4 clients / 1 client: {ratio:.2f}x, medians of {results['rounds']} "
                     f"round(s) (each round: {each})  (goal: at least 2.5x)")
    st = results["second_turn"]
    lines.append(f"second-turn TTFT ({st['prompt_tokens']}-token prompt): {st['reuse_ttft_ms']} ms with prefix "
                 f"reuse, {st['no_reuse_ttft_ms']} ms without (cold): "
                 f"{st['reuse_ttft_ms'] / st['no_reuse_ttft_ms']:.2f}x  (goal: at most 0.5x)")
    return "\n".join(lines)


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
