"""The HTML of `cb web`, rendered on the server: three pages (chat, files, tabs) in one layout, and the
fragments the page's script swaps in after an action (a batch, the file list, the meter, the tabs).

Every piece of untrusted text goes through `cb.web.markup`; everything else here is our own markup. The
script finds its work through data attributes: `data-post` (POST the element's `data-body` JSON, plus a
form's fields, with the CSRF header), `data-target` (the id of the element the answer's `html` replaces),
`data-reveal` / `data-conceal` (show or hide a confirmation step), `data-stream` (an SSE source).
"""

from __future__ import annotations

import html
import json
from typing import Any

from cb import context
from cb.chat import Turn, stats_line
from cb.confirm import editable
from cb.web import markup
from cb.web.batches import Batch
from cb.web.state import OpenFile, WebState
from cb.web.tabs import TabView

PAGES = (("chat", "/", "Chat"), ("files", "/files", "Files"), ("tabs", "/tabs", "Tabs"))


def _attr(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _body(**values: Any) -> str:
    return _attr(json.dumps(values))


def button(label: str, url: str, target: str = "", cls: str = "", **body: Any) -> str:
    """A button that POSTs `body` to `url` and swaps the answer into `target`."""
    extra = f' data-target="{_attr(target)}"' if target else ""
    return (f'<button type="button" class="{cls}" data-post="{_attr(url)}" data-body="{_body(**body)}"{extra}>'
            f"{html.escape(label)}</button>")


def layout(state: WebState, page: str, csrf: str, main: str) -> str:
    current = state.session()
    nav = "".join(f'<a href="{url}"{" aria-current=page" if name == page else ""}>{label}</a>'
                  for name, url, label in PAGES)
    options = "".join(
        f'<option value="{_attr(s.id)}"{" selected" if s.id == current.id else ""}>{markup.text(s.name or s.id)}'
        "</option>" for s in state.sessions())
    title = dict((n, label) for n, _, label in PAGES)[page]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="cb-csrf" content="{_attr(csrf)}"><title>cb · {title}</title>
<link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script></head>
<body data-page="{page}"><header><strong>cb</strong><nav>{nav}</nav>
<label>session <select id="session" data-post="/api/session/use">{options}</select></label>
{button("New session", "/api/session/new")}
<span class="model">{markup.text(state.chat.settings.model)}</span>
{button("Undo last edit", "/api/undo")}<span id="status" role="status"></span></header>
<main>{main}</main></body></html>"""


# --- chat --------------------------------------------------------------------------------------------


def message(role: str, content: str) -> str:
    if role == "user":
        body = f'<pre class="text">{markup.text(content)}</pre>'
        return f'<article class="msg user"><div class="who">you</div>{body}</article>'
    body = f'<div class="md">{markup.markdown(content)}</div>'
    return f'<article class="msg assistant"><div class="who">cb</div>{body}</article>'


def chat_page(state: WebState) -> str:
    current = state.session()
    items = []
    for i, m in enumerate(current.messages()):
        items.append(message(m["role"], m["content"]))
        batch = state.batch_for(current.id, i)
        if batch is not None:
            items.append(batch_html(batch))
    empty = "" if items else '<p class="hint">Ask about the open files; proposed edits show here as diffs.</p>'
    speed = markup.text(stats_line(state.last_turn)) if state.last_turn else ""
    return f"""<section id="conversation">{empty}{"".join(items)}</section>
<div class="speedbar"><span id="speed" class="speed">{speed}</span>
{meter_html(state)}</div>
<form id="ask" autocomplete="off"><textarea name="message" rows="3" required
placeholder="Ask… (Enter sends, Shift-Enter adds a line)"></textarea>
<div class="actions"><button type="submit" id="send">Send</button>
<button type="button" id="stop" hidden>Stop</button>
{button("Clear conversation", "/api/clear", cls="quiet")}</div></form>"""


def batch_html(batch: Batch) -> str:
    """One answer's proposals: a card per file (diff, Apply / Decline / Edit), the commands, the outcome."""
    url = f"/api/batch/{batch.id}"
    target = f"batch-{batch.id}"
    status = f' <span class="badge">{html.escape(batch.status)}</span>' if batch.cards or batch.errors else ""
    parts = [f'<section class="batch {batch.status}" id="{target}"><h3>Proposed changes{status}</h3>']
    parts += [f'<p class="error">✗ {markup.exact(e)}</p>' for e in batch.errors]
    for i, card in enumerate(batch.cards):
        c = card.change
        decided = f'<span class="badge">{html.escape(card.decision)}</span>' if card.decision else ""
        parts.append(f'<div class="card"><div class="card-head"><code>{markup.exact(c.path)}</code> '
                     f"{markup.text(c.summary)} {decided}</div>")
        parts += [f'<p class="warning">⚠ warning: {markup.exact(w)}</p>' for w in c.warnings]
        if card.note:
            parts.append(f'<p class="note">{markup.exact(card.note)}</p>')
        parts.append(markup.diff(c.diff))
        if batch.open and card.decision is None:
            anyway = bool(card.note and c.warnings)
            parts.append('<div class="actions">'
                         + button("Apply anyway" if anyway else "Apply", f"{url}/decide", target, "apply",
                                  card=i, decision="apply", anyway=anyway)
                         + button("Decline", f"{url}/decide", target, "decline", card=i, decision="decline")
                         + f'<button type="button" data-reveal="edit-{batch.id}-{i}">Edit</button></div>'
                         + f'<form id="edit-{batch.id}-{i}" class="edit" hidden data-post="{url}/edit" '
                         f'data-target="{target}" data-body="{_body(card=i)}">'
                         f'<textarea name="blocks" rows="8">{markup.text(editable(c))}</textarea>'
                         '<button type="submit">Use the edited change</button> '
                         f'<button type="button" data-conceal="edit-{batch.id}-{i}">Cancel</button></form>')
        parts.append("</div>")
    if batch.open and len(batch.cards) > 1:
        parts.append('<div class="actions">' + button("Apply all", f"{url}/decide", target, "apply",
                                                      card=None, decision="apply")
                     + button("Decline all", f"{url}/decide", target, "decline", card=None, decision="decline")
                     + "</div>")
    parts += [f'<p class="note">note: {markup.exact(n)}</p>' for n in batch.notes]
    if batch.message:
        parts.append(f'<p class="outcome">{markup.exact(batch.message)}</p>')
    if batch.status == "applied":
        parts.append('<div class="actions">' + button("Undo", f"{url}/undo", target) + "</div>")
    for i, run in enumerate(batch.runs):
        parts.append(f'<div class="run"><div>run in tab <code>{markup.exact(run.tab)}</code>: '
                     f'<code class="command">{markup.exact(run.proposal.command)}</code> '
                     f'<span class="badge">{html.escape(run.state)}</span></div>')
        if run.state == "proposed":
            confirm = f"confirm-{batch.id}-{i}"
            parts.append(f'<div class="actions"><button type="button" data-reveal="{confirm}">Run…</button>'
                         + button("Don't run", f"{url}/decline-run", target, "decline", run=i) + "</div>"
                         f'<div id="{confirm}" class="confirm" hidden>Run this command in tab '
                         f"<code>{markup.exact(run.tab)}</code>?<pre>{markup.exact(run.proposal.command)}</pre>"
                         + button("Yes, run it", f"{url}/run", target, "apply", run=i, confirmed=True)
                         + f'<button type="button" data-conceal="{confirm}">Cancel</button></div>')
        elif run.message:
            parts.append(f'<p class="outcome">{markup.exact(run.message)}</p>')
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def meter_html(state: WebState) -> str:
    """The context meter: the last turn's prompt against the context (as the REPL's right prompt), and the
    last measurement's sources."""
    turn: Turn | None = state.last_turn
    measured: context.Assembled | None = state.measured
    files = len(state.session().files)
    label = f"{files} file{'s' * (files != 1)}"
    used, total = ((measured.prompt_tokens, measured.context_length) if measured
                   else (turn.prompt_tokens, turn.context_length) if turn else (0, 0))
    if not total:
        return f'<div id="meter" class="meter">{label} · context: measured at the next turn</div>'
    rows = ""
    if measured:
        rows = "".join(f"<tr><td>{markup.text(name)}</td><td>{n}</td></tr>" for name, n in measured.sources)
        rows = f'<table class="sources"><tr><th>source</th><th>tokens</th></tr>{rows}</table>'
        rows += "".join(f'<p class="note">[… {markup.text(cut)}]</p>' for cut in measured.cuts)
    return (f'<div id="meter" class="meter">{label} · context <meter min="0" max="{total}" value="{used}"></meter> '
            f'<span class="count">{used}/{total} ({100 * used / total:.0f}%)</span>{rows}</div>')


# --- files -------------------------------------------------------------------------------------------


def files_fragment(state: WebState) -> str:
    rows = "".join(_file_row(f) for f in state.files())
    table = (f'<table class="files"><tr><th>file</th><th>version</th><th>lines</th><th>bytes</th><th></th></tr>'
             f"{rows}</table>" if rows else '<p class="hint">No open files.</p>')
    return f'<section id="files">{table}</section>'


def _file_row(f: OpenFile) -> str:
    version = (f"<code>{html.escape(f.version)}</code>" if f.version
               else f'<span class="error">{markup.text(f.error)}</span>')
    return (f"<tr><td><code>{markup.exact(f.shown)}</code></td><td>{version}</td><td>{f.lines}</td><td>{f.size}</td>"
            f'<td>{button("Close", "/api/files/close", "files", "quiet", path=f.path)}</td></tr>')


def files_page(state: WebState) -> str:
    return f"""<h2>Open files</h2><p class="hint">The model sees these every turn, with line numbers and their
version; an edit must name the version it was made against.</p>{files_fragment(state)}
<form data-post="/api/files/open" data-target="files" autocomplete="off"><input name="path" required
placeholder="path, relative to {markup.exact(str(state.project))}"> <button type="submit">Open</button></form>
<h2>Context</h2>{meter_html(state)}
<div class="actions">{button("Measure now", "/api/context", "meter")}</div>"""


# --- tabs --------------------------------------------------------------------------------------------


def tabs_fragment(views: list[TabView]) -> str:
    if not views:
        return '<p class="hint">No agentshell tabs. Start one below, or with <code>cb tab run CMD</code>.</p>'
    parts = []
    for v in views:
        t = v.info
        kill = button("Kill", "/api/tabs/kill", "", "decline", tab=str(t.id)) if t.status == "running" else ""
        parts.append(f'<article class="tab" id="tab-{t.id}"><h3><code>{markup.exact(t.label)}</code> '
                     f'<span class="badge">{markup.text(v.state)}</span> <code>{markup.exact(" ".join(t.argv))}</code> '
                     f'{kill}</h3><pre class="out">{markup.text(chr(10).join(v.lines))}</pre></article>')
    return "".join(parts)


def tabs_page(views: list[TabView]) -> str:
    return f"""<h2>Tabs</h2><section id="tabs" data-stream="/api/tabs/stream">{tabs_fragment(views)}</section>
<form data-post="/api/tabs/run" autocomplete="off"><input name="name" placeholder="tab name" size="10">
<input name="command" required placeholder="command, run with your shell" size="50">
<button type="submit">Run in a new tab</button></form>"""


# --- refusals ----------------------------------------------------------------------------------------


def refused(status: int, reason: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cb · {status}</title></head>'
            f"<body><h1>{status}</h1><p>{markup.text(reason)}</p></body></html>")
