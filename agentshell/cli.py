"""The `agentshell` command line: process tabs that outlive your ssh session.

Every verb talks to the per-user daemon through `agentshell.client` (starting it when needed) and takes
`--json`. Exit codes: 0 ok, 1 error, 2 usage, 3 daemon unavailable, 124 wait timed out; `wait --exit`
exits with the tab's own exit code (128+N when it died of signal N).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import typer

from agentshell import protocol as p
from agentshell.output import JSON, emit, one_line_errors
from cb import package_version

app = typer.Typer(
    name="agentshell",
    help="Process tabs that outlive your ssh session: run dev servers, watchers and REPLs in PTY tabs owned by "
         "a per-user daemon, read their output (rendered like a terminal shows it), type into them, attach.\n\n"
         "Examples:\n\n"
         "  agentshell new --name dev -- npm run dev\n\n"
         "  agentshell wait dev --for 'ready on' --timeout 60\n\n"
         "  agentshell read dev --tail 20\n\n"
         "  agentshell send dev 'rs' --keys Enter\n\n"
         "  agentshell attach dev        (detach with Ctrl-])\n\n"
         "Tabs are named by id or name. Every command takes --json. Exit codes: 0 ok, 1 error, 2 usage, "
         "3 daemon unavailable, 124 wait timed out; `wait --exit` exits with the tab's own code.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

TAB = typer.Argument(..., help="Tab id or name.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"agentshell {package_version() or '(not installed: no package metadata)'}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", help="Print agentshell's version and exit.",
                                      is_eager=True, callback=_print_version)) -> None:
    """Keep the app a command group, whatever number of commands it has."""


def _client() -> Any:
    from agentshell.client import Client

    return Client.connect(client_name="agentshell-cli")


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def status_text(tab: p.TabInfo) -> str:
    """`running`, `exited 0`, `exited SIGTERM`, `killed`, `lost`."""
    if tab.status in (p.EXITED, p.KILLED) and (tab.exit_code is not None or tab.exit_signal is not None):
        import signal

        how = str(tab.exit_code) if tab.exit_code is not None else signal.Signals(tab.exit_signal).name
        return f"{tab.status} {how}"
    return tab.status


def tabs_table(tabs: list[p.TabInfo]) -> str:
    if not tabs:
        return "no tabs (start one: agentshell new -- CMD)"
    now = time.time()
    rows = [("ID", "NAME", "STATUS", "PID", "AGE", "OUTPUT", "COMMAND")]
    for t in tabs:
        rows.append((str(t.id), t.name or "-", status_text(t), str(t.pid or "-"), _age((t.ended or now) - t.created),
                     _size(t.end_offset), " ".join(t.argv)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows)


def _size(n: int) -> str:
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n}B"


def safe_text(data: bytes) -> str:
    """Raw output made safe to print: escape sequences removed, a carriage-return redraw on a line of its own,
    other controls shown as ␛-style glyphs."""
    from agentshell.daemon.escapes import text_for_matching

    text = text_for_matching(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
    return "".join(ch if ch in "\n\t" or (ch.isprintable() and not 0x80 <= ord(ch) <= 0x9F)
                   else chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else "\ufffd" for ch in text)


# --- the daemon ---------------------------------------------------------------------------------------------


@app.command()
def serve(
    background: bool = typer.Option(False, "--background", help="Detach from the terminal; log to the state dir."),
    stop_timeout: float = typer.Option(5.0, help="Seconds between TERM and KILL when a tab is closed."),
    ring_bytes: int = typer.Option(8 << 20, help="Output bytes kept in memory per tab (oldest dropped)."),
    log_bytes: int = typer.Option(8 << 20, help="Size at which a tab's log file is rotated (2 backups kept)."),
    handshake_timeout: float = typer.Option(10.0, help="Seconds a new connection has to say hello."),
) -> None:
    """Run the daemon (foreground by default). Clients start it in the background on their own when needed."""
    from agentshell.daemon import run as daemon_run
    from agentshell.daemon.server import Settings

    settings = Settings(ring_cap=ring_bytes, log_max_bytes=log_bytes, stop_timeout=stop_timeout,
                        handshake_timeout=handshake_timeout)
    raise typer.Exit(daemon_run.main(settings, background))


@app.command()
@one_line_errors
def ping(as_json: bool = JSON) -> None:
    """Check that the daemon answers (starting it if needed)."""
    with _client() as c:
        t0 = time.perf_counter()
        info = c.ping()
        info["rtt_ms"] = (time.perf_counter() - t0) * 1000
    emit(as_json, info, f"agentshell pid {info['pid']}: {info['tabs']} tabs, up {_age(info['uptime'])}, "
                         f"{info['rtt_ms']:.2f} ms")


@app.command()
@one_line_errors
def shutdown(as_json: bool = JSON) -> None:
    """Stop the daemon; running tabs are ended (TERM, then KILL)."""
    from agentshell.client import Client

    with Client.connect(autostart=False) as c:
        c.shutdown()
    emit(as_json, {"stopped": True}, "agentshell stopped")


# --- tabs ---------------------------------------------------------------------------------------------------


@app.command(context_settings={"allow_interspersed_args": False})
@one_line_errors
def new(
    command: list[str] = typer.Argument(  # noqa: B008
        None, help="The command and its arguments, after `--` (default: your shell)."),
    name: str = typer.Option(None, "--name", "-n", help="A name to use instead of the id."),
    cwd: Path = typer.Option(None, "--cwd", "-C", help="Working directory (default: the current one)."),  # noqa: B008
    cols: int = typer.Option(120, help="Terminal width."),
    rows: int = typer.Option(40, help="Terminal height."),
    as_json: bool = JSON,
) -> None:
    """Start a tab: `agentshell new --name web -- python -m http.server`. It inherits this shell's environment."""
    with _client() as c:
        tab = c.new(command or None, name=name, cwd=(cwd or Path.cwd()).resolve(), env=dict(os.environ),
                    cols=cols, rows=rows)
    emit(as_json, tab.to_wire(), f"tab {tab.label} started (pid {tab.pid}): {' '.join(tab.argv)}")


@app.command("ls")
@one_line_errors
def ls_(as_json: bool = JSON) -> None:
    """List tabs: running, exited (with code), killed, or lost (running when the daemon died; never re-run)."""
    with _client() as c:
        tabs = c.ls()
    emit(as_json, [t.to_wire() for t in tabs], tabs_table(tabs))


@app.command()
@one_line_errors
def send(
    tab: str = TAB,
    text: str = typer.Argument("", help="Text to type. Control sequences and paste markers in it are removed."),
    keys: list[str] = typer.Option(None, "--keys", "-k",  # noqa: B008
                                   help="Keys to press after the text: Enter, Tab, Escape, Up, C-c, C-d, M-x, F1..."),
    enter: bool = typer.Option(False, "--enter", "-e", help="Press Enter after the text (same as --keys Enter)."),
    as_json: bool = JSON,
) -> None:
    """Type into a tab: `agentshell send dev 'make test' --enter`, `agentshell send dev --keys C-c`."""
    with _client() as c:
        result = c.send(tab, text, list(keys or []) + (["Enter"] if enter else []))
    note = f" ({result['removed']} control characters removed)" if result["removed"] else ""
    emit(as_json, result, f"sent {result['written']} bytes{note}")


@app.command()
@one_line_errors
def read(
    tab: str = TAB,
    since: int = typer.Option(None, "--since", help="Raw output from this byte offset (from an earlier --json end)."),
    tail: int = typer.Option(None, "--tail", help="The last N lines, rendered as the terminal shows them."),
    screen: bool = typer.Option(False, "--screen", help="The tab's current screen."),
    raw: bool = typer.Option(False, "--raw", help="With --since: write the exact bytes (escapes included)."),
    reader: str = typer.Option("", "--reader", help="With --tail: mark what is new since this reader's last look."),
    as_json: bool = JSON,
) -> None:
    """Read a tab's output: rendered tail (default, 40 lines), screen, or raw bytes since an offset."""
    if sum(x is not None and x is not False for x in (since, tail, screen or None)) > 1:
        raise p.BadRequest("use one of --since, --tail, --screen")
    with _client() as c:
        if screen:
            lines = c.screen(tab)
            emit(as_json, {"lines": lines}, "\n".join(lines))
        elif since is not None:
            out = c.read(tab, since=since)
            if raw and not as_json:
                sys.stdout.buffer.write(out.data)
                sys.stdout.flush()
                return
            data = {"start": out.start, "end": out.end, "dropped": out.dropped, "status": out.status,
                    "text": out.data.decode(errors="replace"), "data_b64": p.b64(out.data)}
            emit(as_json, data, safe_text(out.data))
        else:
            result = c.tail(tab, tail or 40, reader=reader, mark_seen=bool(reader))
            emit(as_json, {"text": result.text, "lines": result.lines, "new_from": result.new_from,
                            "end_offset": result.end_offset, "status": result.tab.status}, result.text)


@app.command()
@one_line_errors
def wait(
    tab: str = TAB,
    pattern: str = typer.Option(None, "--for", help="A regex to wait for in the output (escapes removed; ^ and $ "
                                                    "match at line ends)."),
    idle: float = typer.Option(None, "--idle", help="Wait until the tab prints nothing for this many seconds."),
    exit_: bool = typer.Option(False, "--exit", help="Wait for the tab to end; exit with its exit code."),
    since: int = typer.Option(None, "--since", help="Match only output from this offset (default: all kept)."),
    timeout: float = typer.Option(None, "--timeout", help="Give up after this many seconds (exit code 124)."),
    as_json: bool = JSON,
) -> None:
    """Block until a pattern shows up, the tab goes quiet, or it exits: `agentshell wait dev --for 'ready'`.

    A tab that ends before the pattern shows makes `--for` fail (exit 1), unless `--exit` was given too."""
    with _client() as c:
        result = c.wait(tab, pattern=pattern, idle=idle, exit=exit_, timeout=timeout, since=since)
    data = {"reason": result.reason, "match": result.match, "offset": result.offset, "tab": result.tab.to_wire()}
    emit(as_json, data, f"{result.reason}: {result.match}" if result.match else
          f"{result.reason} ({status_text(result.tab)})")
    if exit_ and result.reason == "exit":
        code = result.tab.exit_code
        raise typer.Exit(code if code is not None else 128 + (result.tab.exit_signal or 0))
    if result.reason == "exit" and pattern is not None:
        raise p.TabNotRunning(f"tab {result.tab.label} ended ({status_text(result.tab)}) before that happened")


@app.command("signal")
@one_line_errors
def signal_(tab: str = TAB, sig: str = typer.Argument(..., metavar="SIGNAL", help="INT, TERM, HUP, KILL, 9, ..."),
            as_json: bool = JSON) -> None:
    """Send a signal to the tab's whole process group."""
    with _client() as c:
        info = c.signal(tab, sig)
    emit(as_json, info.to_wire(), f"sent {sig} to tab {info.label}")


@app.command()
@one_line_errors
def resize(tab: str = TAB, cols: int = typer.Argument(...), rows: int = typer.Argument(...),
           as_json: bool = JSON) -> None:
    """Set the tab's terminal size (the program gets SIGWINCH)."""
    with _client() as c:
        info = c.resize(tab, cols, rows)
    emit(as_json, info.to_wire(), f"tab {info.label} is {cols}x{rows}")


@app.command()
@one_line_errors
def kill(tab: str = TAB, as_json: bool = JSON) -> None:
    """End the tab's processes (HUP+TERM, then KILL after the stop timeout). The tab stays listed; see rm."""
    with _client() as c:
        info = c.kill(tab)
    emit(as_json, info.to_wire(), f"tab {info.label}: {status_text(info)}")


@app.command()
@one_line_errors
def rm(tab: str = TAB, force: bool = typer.Option(False, "--force", "-f", help="Kill it first if it is running."),
       as_json: bool = JSON) -> None:
    """Forget a tab and delete its logs."""
    with _client() as c:
        c.rm(tab, force=force)
    emit(as_json, {"removed": tab}, f"tab {tab} removed")


@app.command()
@one_line_errors
def rename(tab: str = TAB, name: str = typer.Argument(..., help="The new name (not only digits)."),
           as_json: bool = JSON) -> None:
    """Give a tab a (new) name."""
    with _client() as c:
        info = c.rename(tab, name)
    emit(as_json, info.to_wire(), f"tab {info.id} is now {info.name}")


@app.command()
@one_line_errors
def logs(tab: str = TAB, path: bool = typer.Option(False, "--path", help="Print the log files' paths only."),
         as_json: bool = JSON) -> None:
    """Print a tab's whole logged output (rotated files included), escape sequences removed."""
    with _client() as c:
        files = c.logs(tab)
    if path or as_json:
        emit(as_json, {"paths": [str(f) for f in files]}, "\n".join(map(str, files)))
        return
    for f in files:
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                typer.echo(safe_text(chunk), nl=False)


@app.command()
@one_line_errors
def attach(tab: str = TAB, detach_key: str = typer.Option("C-]", "--detach-key", help="Control key that detaches."),
           as_json: bool = JSON) -> None:
    """Interactive view of a tab, like `tmux attach`; the detach key (Ctrl-] by default) leaves it running."""
    from agentshell.attach import attach as run_attach

    with _client() as c:
        ended = run_attach(c, tab, detach_key)
    if ended is None:
        emit(as_json, {"detached": True}, f"detached from tab {tab} (still running)")
    else:
        emit(as_json, {"detached": False, "tab": ended.to_wire()}, f"tab {ended.label}: {status_text(ended)}")


@app.command()
@one_line_errors
def bench(
    round_trips: int = typer.Option(500, help="send->echo round trips through a `cat` tab."),
    flood_mb: int = typer.Option(200, help="MB a flooding tab writes for the capture measurement."),
    idle_tabs: int = typer.Option(100, help="Idle tabs open for the RSS measurement."),
    as_json: bool = JSON,
) -> None:
    """Measure round trip p50/p99, capture MB/s and daemon RSS with idle tabs, against the targets."""
    from agentshell.bench import format_results, run_bench

    results = run_bench(round_trips, flood_mb, idle_tabs)
    emit(as_json, results, format_results(results))


def main() -> None:
    app()
