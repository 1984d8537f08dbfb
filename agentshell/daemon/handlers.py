"""One handler per request, and the single dispatch table. Each takes the daemon, the connection and the
validated request dataclass, and returns the result object (or raises an `AgentshellError`)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agentshell import protocol as p
from agentshell.daemon import procs, render
from agentshell.daemon.escapes import text_for_matching
from agentshell.keys import defuse, key_bytes

if TYPE_CHECKING:
    from agentshell.daemon.server import Connection, Daemon

Result = dict[str, Any]
MATCH_OVERLAP = 4096  # bytes re-searched before new output, so a match split across reads is found


async def ping(d: Daemon, c: Connection, r: p.Ping) -> Result:
    return {"pid": d.pid, "tabs": len(d.tabs), "uptime": time.monotonic() - d.started}


async def ls(d: Daemon, c: Connection, r: p.ListTabs) -> Result:
    return {"tabs": [d.info(t).to_wire() for t in sorted(d.tabs.values(), key=lambda t: t.record.id)]}


async def info(d: Daemon, c: Connection, r: p.GetTab) -> Result:
    return {"tab": d.info(d.find(r.tab)).to_wire()}


async def new(d: Daemon, c: Connection, r: p.NewTab) -> Result:
    if not 2 <= r.cols <= 1000 or not 2 <= r.rows <= 1000:
        raise p.BadRequest(f"size {r.cols}x{r.rows} is out of range (2..1000)")
    if r.argv is not None and not r.argv:
        raise p.BadRequest("argv is empty")
    tab = d.spawn(r.argv, name=r.name or "", cwd=r.cwd or str(d.home), env=r.env, cols=r.cols, rows=r.rows)
    return {"tab": d.info(tab).to_wire()}


async def send(d: Daemon, c: Connection, r: p.SendInput) -> Result:
    tab = d.find(r.tab)
    text, removed = defuse(r.text)
    try:
        keys = b"".join(key_bytes(k) for k in r.keys)
    except ValueError as e:
        raise p.BadRequest(str(e)) from None
    data = text.encode()
    if data and tab.paste_mode and ("\n" in text or "\r" in text):
        data = b"\x1b[200~" + data + b"\x1b[201~"  # multi-line text lands as one paste, not as typed lines
    data += keys
    if len(data) > p.MAX_INPUT_BYTES:
        raise p.BadRequest(f"input of {len(data)} bytes is over the limit of {p.MAX_INPUT_BYTES}")
    return {"written": tab.write(data), "removed": removed}


async def read(d: Daemon, c: Connection, r: p.ReadOutput) -> Result:
    tab = d.find(r.tab)
    limit = max(0, min(r.max_bytes, p.MAX_READ_BYTES))
    data, start, dropped = tab.ring.slice(r.since, r.tail, limit)
    return {"data_b64": p.b64(data), "start": start, "end": start + len(data), "dropped": dropped,
            "status": tab.record.status}


async def tail(d: Daemon, c: Connection, r: p.RenderTail) -> Result:
    tab = d.find(r.tab)
    rec = tab.record
    lines = max(0, min(r.lines, 2000))
    data, start, _ = tab.ring.slice(tail=render.tail_feed_size(lines, rec.cols))
    seen = rec.seen.get(r.reader) if r.reader else None
    end = tab.ring.end
    rendered = await asyncio.get_running_loop().run_in_executor(
        None, render.render_tail, data, start, seen, rec.cols, rec.rows, lines, start > tab.ring.start)
    note = p.DROPPED_MARKER.format(n=tab.ring.dropped) if tab.ring.dropped and start == tab.ring.start else None
    if r.reader and r.mark_seen:
        rec.seen[r.reader] = end
        d.mark_dirty()
    return {"tab": d.info(tab).to_wire(), "text": render.join_with_marker(rendered.lines, rendered.new_from, note),
            "lines": rendered.lines, "new_from": rendered.new_from,
            "new_bytes": 0 if seen is None else max(end - seen, 0), "end_offset": end}


async def screen(d: Daemon, c: Connection, r: p.RenderScreen) -> Result:
    tab = d.find(r.tab)
    data, start, _ = tab.ring.slice(tail=render.SCREEN_FEED)
    lines, cursor = await asyncio.get_running_loop().run_in_executor(
        None, render.render_screen, data, tab.record.cols, tab.record.rows, start > tab.ring.start)
    return {"lines": lines, "cursor": list(cursor)}


async def wait(d: Daemon, c: Connection, r: p.Wait) -> Result:
    tab = d.find(r.tab)
    if r.pattern is None and r.idle is None and not r.exit:
        raise p.BadRequest("wait needs a pattern, idle seconds or exit")
    try:
        pattern = re.compile(r.pattern, re.MULTILINE) if r.pattern is not None else None
    except re.error as e:
        raise p.BadRequest(f"bad pattern {r.pattern!r}: {e}") from None
    if pattern is None and r.idle is None:  # exit only: no need to wake on every chunk of output
        try:
            await asyncio.wait_for(tab.finished.wait(), None if r.timeout is None else max(r.timeout, 0.0))
        except TimeoutError:
            raise p.WaitTimeout(f"tab {tab.record.id} did not end within {r.timeout:g} s") from None
        return {"reason": "exit", "match": None, "offset": tab.ring.end, "tab": d.info(tab).to_wire()}
    loop = asyncio.get_running_loop()
    deadline = None if r.timeout is None else loop.time() + max(r.timeout, 0.0)
    pos = tab.ring.start if r.since is None else r.since
    changed = asyncio.Event()
    tab.changed.add(changed)
    try:
        while True:
            changed.clear()
            if pattern is not None:
                data, start, _ = tab.ring.slice(since=max(pos - MATCH_OVERLAP, tab.ring.start, 0))
                m = pattern.search(text_for_matching(data))
                if m:
                    return {"reason": "match", "match": m.group(0)[:1000], "offset": start + len(data),
                            "tab": d.info(tab).to_wire()}
                pos = start + len(data)
            if tab.finished.is_set():
                return {"reason": "exit", "match": None, "offset": tab.ring.end, "tab": d.info(tab).to_wire()}
            quiet = time.monotonic() - tab.last_output
            if r.idle is not None and quiet >= r.idle:
                return {"reason": "idle", "match": None, "offset": tab.ring.end, "tab": d.info(tab).to_wire()}
            sleep = None if r.idle is None else r.idle - quiet
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise p.WaitTimeout(f"tab {tab.record.id}: nothing to wait for came within {r.timeout:g} s")
                sleep = left if sleep is None else min(sleep, left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), sleep)
    finally:
        tab.changed.discard(changed)


async def signal_(d: Daemon, c: Connection, r: p.SignalTab) -> Result:
    tab = d.find(r.tab)
    try:
        sig = procs.parse_signal(r.signal)
    except ValueError as e:
        raise p.BadRequest(str(e)) from None
    tab.signal(sig)
    return {"tab": d.info(tab).to_wire()}


async def resize(d: Daemon, c: Connection, r: p.Resize) -> Result:
    if not 2 <= r.cols <= 1000 or not 2 <= r.rows <= 1000:
        raise p.BadRequest(f"size {r.cols}x{r.rows} is out of range (2..1000)")
    tab = d.find(r.tab)
    tab.resize(r.cols, r.rows)
    d.mark_dirty()
    return {"tab": d.info(tab).to_wire()}


async def kill(d: Daemon, c: Connection, r: p.KillTab) -> Result:
    tab = d.find(r.tab)
    await tab.terminate(d.stop_timeout)
    d.mark_dirty()
    return {"tab": d.info(tab).to_wire()}


async def rm(d: Daemon, c: Connection, r: p.RemoveTab) -> Result:
    tab = d.find(r.tab)
    if not tab.finished.is_set() and not r.force:
        raise p.TabStillRunning(f"tab {tab.record.id} is running; kill it first or use --force")
    await tab.terminate(d.stop_timeout)  # also ends leftovers of a tab that already ended
    d.remove(tab)
    return {}


async def rename(d: Daemon, c: Connection, r: p.RenameTab) -> Result:
    tab = d.find(r.tab)
    d.check_name(r.name, exclude=tab)
    tab.record.name = r.name
    d.save_now()
    return {"tab": d.info(tab).to_wire()}


async def logs(d: Daemon, c: Connection, r: p.LogPaths) -> Result:
    tab = d.find(r.tab)
    tab.log.flush()
    return {"paths": [str(x) for x in tab.log.paths()]}


async def attach(d: Daemon, c: Connection, r: p.Attach) -> Result:
    tab = d.find(r.tab)
    data, start, _ = tab.ring.slice(tail=render.SCREEN_FEED)
    redraw = await asyncio.get_running_loop().run_in_executor(
        None, render.redraw_bytes, data, tab.record.cols, tab.record.rows, start > tab.ring.start)
    c.start_attach(tab, c.current_request)
    return {"redraw_b64": p.b64(redraw), "tab": d.info(tab).to_wire()}


async def detach(d: Daemon, c: Connection, r: p.Detach) -> Result:
    c.stop_attach()
    return {}


async def shutdown(d: Daemon, c: Connection, r: p.Shutdown) -> Result:
    d.request_shutdown()
    return {}


async def hello(d: Daemon, c: Connection, r: p.Hello) -> Result:
    raise p.BadRequest("hello was already said on this connection")


HANDLERS: dict[type[p.Request], Callable[[Daemon, Connection, Any], Awaitable[Result]]] = {
    p.Hello: hello, p.Ping: ping, p.ListTabs: ls, p.GetTab: info, p.NewTab: new, p.SendInput: send,
    p.ReadOutput: read, p.RenderTail: tail, p.RenderScreen: screen, p.Wait: wait, p.SignalTab: signal_,
    p.Resize: resize, p.KillTab: kill, p.RemoveTab: rm, p.RenameTab: rename, p.LogPaths: logs,
    p.Attach: attach, p.Detach: detach, p.Shutdown: shutdown,
}
