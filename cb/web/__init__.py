"""`cb web`: the CLI's sessions, open files, model server and agentshell tabs in a browser, on the stdlib.

It is a second face of cb, not a second cb: a turn is `cb.chat.Chat.ask` (its `on_text` seam streams the
pieces), edits go through `cb.edits.apply_edits` (tools' plan → confirm → atomic apply → undo journal, the
page's choices being the confirmation), edited proposals through `cb.confirm.replan_edited`, commands through
`cb.edits.send_to_tab`, sessions through `cb.session`, tabs through `agentshell.client`.

    security.py   the per-start secrets (URL token → cookie, CSRF token), the checks every request passes
                  (Host, cookie; and on POST: Origin, CSRF header, JSON body), the response headers (CSP)
    markup.py     untrusted text → inert HTML: Markdown (markdown-it, raw HTML escaped, no links or images
                  loaded, code highlighted by Pygments), diffs, plain text; all after cb.sanitize / visible
    batches.py    one answer's proposals on the page: per-file Apply / Decline / Edit, committed all at once
                  through apply_edits when every file is decided; Undo; proposed commands run once, confirmed
    state.py      `WebState`: the settings, the session (re-read from disk per request, so the CLI and the page
                  see one session), the Chat, the batches, the turn lock; every action the pages can take
    pages.py      the server-rendered HTML: layout, chat, files and context meter, tabs; fragments that the
                  page's JavaScript swaps in after an action
    server.py     ThreadingHTTPServer + handler: routing, SSE for the answer stream and the tabs' output,
                  static files; `serve()` is what `cb web` runs
    bench.py      page load time (navigation timing in headless Chromium) beside a static page's
    static/       app.js (about 200 lines, no library) and app.css

Nothing is fetched from elsewhere at run time: the CSP says `default-src 'none'` and allows only this origin's
script, style and connections.
"""
