"""Untrusted text (model answers, file names, diffs, tab output) as inert HTML: escaped, never raw.

Every function first makes control characters visible (`cb.sanitize.sanitize`, or `tools.visible` where
the exact text is being approved: diffs, commands, paths), then escapes what it emits. Markdown goes
through markdown-it (CommonMark, tables, strikethrough) with raw HTML off, so `<script>` in an answer is
text; a link is shown as its text followed by its address, never as an anchor, and an image as its alt text
and address, never loaded (the page's CSP would block it anyway). Code blocks with a language Pygments
knows are highlighted (Pygments escapes what it emits); others are escaped as they are.
"""

from __future__ import annotations

import functools
import html
from typing import Any

from cb.sanitize import sanitize
from tools.preview import visible


def text(value: str) -> str:
    """Plain untrusted text as HTML (control characters shown, everything escaped)."""
    return html.escape(sanitize(value), quote=True)


def exact(value: str) -> str:
    """Text a person approves (a command, a path): invisible characters shown too, then escaped."""
    return html.escape(visible(value), quote=True)


def markdown(value: str) -> str:
    """An answer (complete or still streaming) rendered as Markdown to safe HTML."""
    return _parser().render(sanitize(value))


def diff(value: str) -> str:
    """A unified diff (already `visible`) as a <pre> with one classed span per line (its newline inside)."""
    rows = []
    for line in value.splitlines():
        kind = ("head" if line.startswith(("+++", "---")) else "hunk" if line.startswith("@@")
                else "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx")
        rows.append(f'<span class="{kind}">{html.escape(line)}\n</span>')
    return '<pre class="diff">' + "".join(rows) + "</pre>"


@functools.cache
def code_css(theme: str) -> str:
    """Pygments' rules for highlighted code blocks in answers, in `theme` (default style when unknown)."""
    from pygments.formatters import HtmlFormatter
    from pygments.util import ClassNotFound

    try:
        formatter = HtmlFormatter(style=theme)
    except ClassNotFound:
        formatter = HtmlFormatter()
    return formatter.get_style_defs(".md pre")


def _highlight(code: str, lang: str, attrs: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang.strip()) if lang.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes the code itself
    return highlight(code, lexer, HtmlFormatter(nowrap=True))


def _link_open(self: Any, tokens: list[Any], idx: int, options: Any, env: dict[str, Any]) -> str:
    env.setdefault("links", []).append(str(tokens[idx].attrGet("href") or ""))
    return '<span class="link">'


def _link_close(self: Any, tokens: list[Any], idx: int, options: Any, env: dict[str, Any]) -> str:
    href = env["links"].pop() if env.get("links") else ""
    shown = tokens[idx - 1].content if idx and tokens[idx - 1].type == "text" else ""
    address = "" if not href or href == shown else f' <span class="url">({html.escape(href)})</span>'
    return f"</span>{address}"


def _image(self: Any, tokens: list[Any], idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = str(token.attrGet("src") or "")
    return f'<span class="image">[image: {html.escape(alt)}] <span class="url">({html.escape(src)})</span></span>'


@functools.cache
def _parser() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight}).enable(["table", "strikethrough"])
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("link_close", _link_close)
    md.add_render_rule("image", _image)
    return md
