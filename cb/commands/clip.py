"""`cb copy` and `cb clip ...`: the clipboard bridge's commands (library code lives in `cb.clip`).

Only typer is imported at module level; redis and pyperclip are imported inside the commands, so
`cb --help` and `cb clip listen --help` stay fast, and `cb clip listen` works on a core install.
"""

from __future__ import annotations

import sys
import time

import typer

app = typer.Typer(
    name="clip",
    help="""The clipboard bridge: what you copy in cb on a remote box lands in your laptop's clipboard.

\b
On the laptop (core install, no torch):
  cb clip keygen --save          make the shared key (copy it to the box too)
  export CB_REDIS_URL=rediss://clip_sub:PASS@redis.example:6380
  cb clip listen                 set the clipboard from every signed clip; one line per write
  cb clip service > ~/.config/systemd/user/cb-clip.service   run it at login
On the box:
  export CB_REDIS_URL=... CB_CLIP_KEY=...    (same key, publisher user)
  cb copy "some text"   |   git diff | cb copy   |   /copy in the chat
Without CB_REDIS_URL, cb copy falls back to OSC 52 (your terminal sets the clipboard).""",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(prefix: str, exc: Exception) -> typer.Exit:
    typer.echo(f"{prefix}: {exc}", err=True)
    return typer.Exit(1)


def copy(text: str | None = typer.Argument(None, help="The text to copy; omit it to read standard input.")) -> None:
    """Copy TEXT (or stdin) to your clipboard: via Redis to `cb clip listen`, else OSC 52.

    \b
    cb copy "hello"
    git rev-parse HEAD | cb copy
    cb copy < notes.md
    Says which path was used; exits 1 with a one-line reason when it cannot copy.
    """
    from cb.clip.errors import ClipError
    from cb.clip.publish import copy_text

    if text is None:
        if sys.stdin is None or sys.stdin.isatty():
            typer.echo("cb copy: give TEXT or pipe it in (e.g. `git diff | cb copy`)", err=True)
            raise typer.Exit(2)
        raw = sys.stdin.buffer.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            typer.echo("cb copy: standard input is not UTF-8 text", err=True)
            raise typer.Exit(1) from None
    if not text:
        typer.echo("cb copy: nothing to copy (empty text)", err=True)
        raise typer.Exit(1)
    try:
        result = copy_text(text)
    except ClipError as exc:
        raise _fail("cb copy", exc) from None
    typer.echo(result.describe(), err=True)


@app.command("listen")
def listen(
    once: bool = typer.Option(False, "--once", help="Exit 0 once the next clip published is set (for scripts)."),
    timeout: float = typer.Option(0.0, "--timeout", help="With --once: give up (exit 1) after this many seconds."),
    stdout: bool = typer.Option(False, "--stdout", help="Write each clip to stdout instead of the clipboard "
                                "(notices go to stderr)."),
    ping_interval: float = typer.Option(3.0, "--ping-interval", help="Seconds of silence before a PING."),
    pong_timeout: float = typer.Option(4.0, "--pong-timeout", help="Seconds without a reply to a PING before "
                                       "the link counts as dead (half-open) and is reconnected."),
    backoff_max: float = typer.Option(30.0, "--backoff-max", help="Longest wait between reconnect attempts."),
    clipboard_timeout: float = typer.Option(2.0, "--clipboard-timeout", help="Seconds a clipboard tool may take."),
) -> None:
    """Set this machine's clipboard from signed clips on Redis, until stopped (Ctrl-C).

    \b
    Needs CB_REDIS_URL and CB_CLIP_KEY (environment or clip.env, see `cb clip status`).
    Refuses unsigned, forged, replayed, stale and oversized clips; strips control characters and escape
    sequences; prints one line per clipboard write. Reconnects forever; after a gap it applies only the
    newest clip it missed.
    """
    import threading

    from cb.clip.clipboard import PyperclipBackend, StdoutBackend
    from cb.clip.config import ListenTiming, load_config
    from cb.clip.errors import ClipError
    from cb.clip.subscriber import Listener

    def notify(level: str, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        typer.echo(f"{stamp} {line}", err=stdout or level == "warn")

    try:
        cfg = load_config()
        cfg.require_url()
        backend = StdoutBackend() if stdout else PyperclipBackend(timeout_s=clipboard_timeout)
        timing = ListenTiming(ping_interval_s=ping_interval, pong_timeout_s=pong_timeout,
                              backoff_max_s=backoff_max)
        listener = Listener(cfg, backend, timing=timing, notify=notify, once=once)
    except ClipError as exc:
        raise _fail("cb clip listen", exc) from None
    timer = threading.Timer(timeout, listener.stop) if once and timeout > 0 else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        listener.run()
    except ClipError as exc:
        raise _fail("cb clip listen", exc) from None
    except KeyboardInterrupt:
        listener.stop()
        raise typer.Exit(130) from None
    finally:
        if timer is not None:
            timer.cancel()
    if once and not listener.applied_event.is_set():
        typer.echo(f"cb clip listen: no clip within {timeout:g} s", err=True)
        raise typer.Exit(1)


@app.command("keygen")
def keygen(save: bool = typer.Option(False, "--save", help="Also store it as CB_CLIP_KEY in clip.env (0600).")) -> None:
    """Make a new random shared key (32 bytes, URL-safe base64) and print it.

    \b
    Use the same key on the box (publisher) and the laptop (listener):
      cb clip keygen --save        # laptop: stored in clip.env, printed for the box
      export CB_CLIP_KEY=...       # box (or put it in the box's clip.env)
    """
    from cb.clip.config import new_key, write_env_value

    key = new_key()
    typer.echo(key)
    if save:
        where = write_env_value("CB_CLIP_KEY", key)
        typer.echo(f"saved as CB_CLIP_KEY in {where}", err=True)


@app.command("status")
def status() -> None:
    """Show the bridge's settings and whether Redis answers (stream length, newest clip, listeners)."""
    from cb.clip.errors import ClipError
    from cb.clip.status import gather_status

    try:
        lines, ok = gather_status()
    except ClipError as exc:
        raise _fail("cb clip status", exc) from None
    for name, value in lines:
        typer.echo(f"{name:<14} {value}")
    if not ok:
        raise typer.Exit(1)


@app.command("test")
def test(timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for the message to come back.")) -> None:
    """Publish a signed test clip and report the round trip through Redis.

    A running `cb clip listen` sets its clipboard to the test text and prints its notice: that is
    the end-to-end check. Exits 1 if the clip could not be published or did not come back verified.
    """
    from cb.clip.errors import ClipError
    from cb.clip.status import round_trip

    try:
        report = round_trip(timeout)
    except ClipError as exc:
        raise _fail("cb clip test", exc) from None
    typer.echo(report)


@app.command("service")
def service(platform: str = typer.Option("", "--platform", help="linux (systemd user unit) or macos (launchd "
                                         "plist); default: this machine.")) -> None:
    """Print a login service that runs `cb clip listen` (systemd user unit on Linux, launchd plist on macOS).

    \b
    cb clip service > ~/.config/systemd/user/cb-clip.service
    systemctl --user enable --now cb-clip.service
    cb clip service --platform macos > ~/Library/LaunchAgents/dev.cb.clip-listen.plist
    The file holds no secrets: the listener reads CB_REDIS_URL and CB_CLIP_KEY from clip.env.
    """
    from cb.clip.service import service_text

    try:
        typer.echo(service_text(platform or None), nl=False)
    except ValueError as exc:
        raise _fail("cb clip service", exc) from None


@app.command("bench")
def bench(
    count: int = typer.Option(1000, "--count", help="Clips to publish."),
    size: int = typer.Option(64, "--size", help="Bytes per clip."),
    interval_ms: float = typer.Option(1.0, "--interval-ms", help="Pause between publishes (0 = back to back)."),
    url: str = typer.Option("", "--url", help="Redis to use (default: a private redis-server on loopback)."),
) -> None:
    """Measure end-to-end latency (publish -> clipboard set, recording backend) next to bare Redis pub/sub.

    Prints p50/p99/max latency and lost/duplicated/reordered counts for the bridge and for its anchor
    (redis-py PUBLISH -> get_message, same Redis, same run). Target: p99 <= 20 ms, 0 lost, 0 duplicated.
    """
    from cb.clip.bench import format_rows, run_bench
    from cb.clip.errors import ClipError

    try:
        rows = run_bench(count=count, size=size, interval_ms=interval_ms, url=url or None)
    except ClipError as exc:
        raise _fail("cb clip bench", exc) from None
    typer.echo(f"cb clip bench: {count} clips of {size} bytes, {interval_ms:g} ms apart, loopback Redis")
    typer.echo(format_rows(rows))
