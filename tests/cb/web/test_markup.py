"""Untrusted text to HTML: nothing in a model answer, a diff or a path becomes markup, a link or an escape.

Run: .venv/bin/python -m pytest tests/cb/web/test_markup.py -q
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from cb.web import markup

TAGS = re.compile(r"<(/?)([a-z0-9]+)")
OWN_TAG = re.compile(r'</?[a-z0-9]+(?: class="[\w -]*")? ?/?>')
OURS = {"p", "pre", "code", "span", "strong", "em", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
        "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "s"}


def test_raw_html_is_escaped_and_links_and_images_are_text() -> None:
    out = markup.markdown('<script>x()</script> <img src=x onerror=y()> [a](http://e.example/) '
                          '![i](http://e.example/p.gif) <http://e.example/auto> [j](javascript:alert(1))')
    assert "&lt;script&gt;x()&lt;/script&gt;" in out and "&lt;img src=x onerror=y()&gt;" in out
    assert "<a " not in out and "<img" not in out and "href" not in out
    assert '<span class="url">(http://e.example/)</span>' in out
    assert "[image: i]" in out
    assert "javascript:" in out and "<span class=\"link\">j" not in out  # not even a link: plain text


def test_escape_sequences_are_shown_not_passed() -> None:
    out = markup.markdown("a\x1b]52;c;aGk=\x07b \x1b[2J \u202e")
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "␛]52;c;aGk=␇b ␛[2J ⟨U+202E⟩" in out


def test_code_is_highlighted_and_escaped() -> None:
    out = markup.markdown("```python\nif a < b: print('<i>')\n```\n\n```nosuchlang\n<b>\n```")
    assert '<pre><code class="language-python"><span class="k">if</span>' in out
    assert "&lt;i&gt;" in out and "&lt;b&gt;" in out and "<b>" not in out
    assert ".md pre .k" in markup.code_css("monokai") and markup.code_css("no-such-theme")


def test_a_diff_line_cannot_close_its_span() -> None:
    out = markup.diff("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-</span><script>\n+ok")
    assert '<span class="del">-&lt;/span&gt;&lt;script&gt;\n</span>' in out and '<span class="add">+ok\n</span>' in out


def test_exact_shows_invisible_characters() -> None:
    assert markup.exact("rm\u200b -rf\t/") == "rm⟨U+200B⟩ -rf\t/"
    assert markup.exact('"><b>') == "&quot;&gt;&lt;b&gt;"


@given(st.text(alphabet=st.sampled_from("<>&\"'`*_[]()!#\\/ \n\x1bscriptimgahref=:javascript"), max_size=80))
def test_no_markdown_input_yields_a_tag_of_its_own(source: str) -> None:
    out = markup.markdown(source)
    assert {name for _, name in TAGS.findall(out)} <= OURS
    assert all(OWN_TAG.fullmatch(tag) for tag in re.findall(r"<[^>]*>", out)), out  # no attribute but class
    assert "\x1b" not in out
